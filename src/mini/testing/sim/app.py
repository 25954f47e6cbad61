"""The simulated provider's ASGI app (wires, accounting, control endpoints) and its command line."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mini.testing.sim import anthropic, bedrock, openai
from mini.testing.sim.core import (
    COUNTERS,
    MAX_ARRIVALS,
    MAX_RECORDED_REQUESTS,
    OUTCOMES,
    READY_PREFIX,
    BadRequest,
    SimConfig,
    SimState,
    Wire,
    json_body,
)

RETRY_HEADER = (
    b"x-mini-retry-count"  # sent by mini's transports on retries; the OpenAI SDK's equivalent below
)
_SDK_RETRY_HEADER = b"x-stainless-retry-count"
WIRES = (openai.WIRE, anthropic.WIRE, bedrock.WIRE)


class _Accounting:
    """ASGI wrapper: faults at arrival, in-flight from arrival to the last byte, outcomes by status code, and
    when a client goes away before its response ends."""

    def __init__(self, app: ASGIApp, state: SimState, wires: tuple[Wire, ...]) -> None:
        self.app = app
        self.state = state
        self.wires = wires

    def _route(self, path: str) -> tuple[Wire, str] | None:
        for wire in self.wires:
            endpoint = wire.endpoint_of(path)
            if endpoint is not None:
                return wire, endpoint
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        routed = self._route(scope.get("path", "")) if scope["type"] == "http" else None
        if routed is None:
            await self.app(scope, receive, send)
            return
        wire, endpoint = routed
        state = self.state
        status, finished, gone = 0, False, False
        body_read = asyncio.Event()

        async def send_and_record(message: Message) -> None:
            nonlocal status, finished
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                finished = True
            await send(message)

        async def receive_and_watch() -> Message:
            # Starlette's StreamingResponse waits here for `http.disconnect` and cancels the body when it
            # comes: the moment the client left is the moment this returns it.
            nonlocal gone
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_read.set()
            if message["type"] == "http.disconnect" and not finished and not gone:
                gone = True
                state.client_gone(endpoint)
            return message

        headers = dict(scope["headers"])
        if len(state.requests) < MAX_RECORDED_REQUESTS:
            state.requests.append(
                {
                    "path": scope.get("path", ""),
                    "query": scope.get("query_string", b"").decode(errors="replace"),
                    "headers": {
                        k.decode(errors="replace"): v.decode(errors="replace") for k, v in headers.items()
                    },
                }
            )
        fault = state.fault_for(wire, headers, endpoint)
        if not endpoint:  # uncounted path: only credentials matter
            await (wire.render(fault) if fault else self.app)(scope, receive, send)
            return
        retry = int(headers.get(RETRY_HEADER) or headers.get(_SDK_RETRY_HEADER) or 0)
        counters = state.stats[endpoint]
        counters["requests"] += 1
        counters["retried"] += retry > 0
        # Rejected requests never count as in flight: a burst of 429s must not inflate the load it reports.
        admitted = fault is None
        if admitted:
            counters["in_flight"] += 1
            counters["peak_in_flight"] = max(counters["peak_in_flight"], counters["in_flight"])
            state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
        state.changed()
        arrival = round(time.monotonic() - state.started, 4)
        request_task = asyncio.current_task()
        left_early = False

        async def watch_for_leaving() -> None:
            # A response that has not started never reads again after its body, so nothing would notice its
            # client leave while it "thinks" (the simulated latency): wait for that here and end the request,
            # as a real provider's closed connection would, so it stops counting as in flight at once.
            nonlocal left_early
            await body_read.wait()
            message = await receive_and_watch()
            if message["type"] == "http.disconnect" and status == 0 and request_task is not None:
                left_early = True
                request_task.cancel()

        watcher = asyncio.create_task(watch_for_leaving()) if admitted else None
        try:
            if fault is not None:
                await wire.render(fault)(scope, receive, send_and_record)
                return
            if state.draw(state.config.slow_fraction):
                await asyncio.sleep(state.config.slow_ms / 1000)
            await self.app(scope, receive_and_watch, send_and_record)
        except asyncio.CancelledError:
            if not left_early or request_task is None:
                raise
            request_task.uncancel()  # we ended it: the client is gone, there is no one to answer
        finally:  # also on cancellation, when the client disconnects mid-stream
            if watcher is not None:
                watcher.cancel()
            if admitted:
                counters["in_flight"] -= 1
            if status in OUTCOMES:
                counters[OUTCOMES[status]] += 1
            if len(state.arrivals) < MAX_ARRIVALS:
                state.arrivals.append((arrival, endpoint, status, retry))
            state.changed()


async def _bad_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    return exc.render(str(exc))


def _control_routes(state: SimState) -> list[Route]:
    """/stats, /arrivals, /gone, /requests, /wait, /config, /reset, /script: what tests read and change."""

    async def stats(request: Request) -> Response:
        return JSONResponse(state.snapshot())

    async def arrivals(request: Request) -> Response:
        return JSONResponse({"arrivals": state.arrivals})

    async def gone(request: Request) -> Response:
        return JSONResponse({"gone": state.gone})

    async def requests(request: Request) -> Response:
        return JSONResponse({"requests": state.requests})

    async def wait(request: Request) -> Response:
        """`?endpoint=chat&in_flight=0&timeout=10`: answers once every named counter of the endpoint ("total"
        by default) has the given value (200), or after `timeout` seconds with the counters as they are (408)."""
        query = dict(request.query_params)
        endpoint = query.pop("endpoint", "total")
        try:
            timeout = float(query.pop("timeout", "10"))
            wanted = {name: int(value) for name, value in query.items()}
        except ValueError as exc:
            raise BadRequest(f"counter values and timeout must be numbers: {exc}") from exc
        unknown = sorted(set(wanted) - set(COUNTERS))
        if endpoint not in state.snapshot() or unknown:
            raise BadRequest(f"unknown endpoint {endpoint!r} or counters {unknown}")

        def reached() -> bool:
            counters = state.snapshot()[endpoint]
            return all(counters[name] == value for name, value in wanted.items())

        try:
            async with asyncio.timeout(timeout):
                await state.wait_until(reached)
        except TimeoutError:
            return JSONResponse(state.snapshot(), status_code=408)
        return JSONResponse(state.snapshot())

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse(state.snapshot())

    async def config(request: Request) -> Response:
        if request.method == "POST":
            try:
                state.update(await json_body(request))
            except (TypeError, ValueError) as exc:
                raise BadRequest(str(exc)) from exc
        return JSONResponse(dataclasses.asdict(state.config))

    async def script(request: Request) -> Response:
        responses = (await json_body(request)).get("responses")
        if not isinstance(responses, list) or not all(
            isinstance(r, dict)
            and ("content" in r or "tool_calls" in r or "refusal" in r)
            and all(isinstance(call, dict) and "name" in call for call in r.get("tool_calls") or [])
            for r in responses
        ):
            raise BadRequest(
                'responses must be a list of {"content": ...}, {"tool_calls": [...]} or {"refusal": ...} objects'
            )
        state.scripts.extend(responses)
        return JSONResponse({"queued": len(state.scripts)})

    return [
        Route("/stats", stats, methods=["GET"]),
        Route("/arrivals", arrivals, methods=["GET"]),
        Route("/gone", gone, methods=["GET"]),
        Route("/requests", requests, methods=["GET"]),
        Route("/wait", wait, methods=["GET"]),
        Route("/reset", reset, methods=["POST"]),
        Route("/config", config, methods=["GET", "POST"]),
        Route("/script", script, methods=["POST"]),
    ]


def build_app(state: SimState) -> ASGIApp:
    """The ASGI app: every wire's provider endpoints, and the control endpoints."""
    routes = [route for wire in WIRES for route in wire.routes(state)] + _control_routes(state)
    # Each wire renders its own 400s; a BadRequest raised by a handler carries the wire that raised it.
    app = Starlette(routes=routes, exception_handlers={BadRequest: _bad_request})
    return _Accounting(app, state, WIRES)


class _ReadyServer(uvicorn.Server):
    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        # The bound port is only known now (port 0); one flushed line tells the parent we accept connections.
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        sys.stdout.write(f"{READY_PREFIX}http://{host}:{port}\n")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mini.testing.sim",
        description="A simulated LLM provider (OpenAI, Anthropic and Bedrock wire formats) with latency, "
        "fault injection and statistics, for tests and benchmarks.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    for field in dataclasses.fields(SimConfig):
        default = getattr(SimConfig(), field.name)
        kind = str if field.name == "api_key" else type(default)
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=kind, default=default)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--exit-on-stdin-eof", action="store_true", help="exit when the parent closes stdin")
    args = parser.parse_args(argv)
    config = SimConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SimConfig)})
    server = _ReadyServer(
        uvicorn.Config(
            build_app(SimState(config)),
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=False,
            lifespan="off",
            backlog=4096,  # bursts of hundreds of new connections from one benchmark client
            timeout_keep_alive=75,  # longer than clients' pool expiry, so the client closes idle sockets first
            timeout_graceful_shutdown=1,
        )
    )
    if args.exit_on_stdin_eof:
        # The parent holds our stdin open; if it dies without stop(), EOF ends us instead of leaving an orphan.
        def watch() -> None:
            # os.read on the raw fd: a thread blocked inside sys.stdin's buffered reader aborts interpreter exit.
            while os.read(sys.stdin.fileno(), 4096):
                pass
            server.should_exit = True

        threading.Thread(target=watch, daemon=True).start()
    server.run()
