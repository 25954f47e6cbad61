"""Simulated OpenAI-compatible LLM server (latency, faults, stats) for provider tests and benchmarks."""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import functools
import hashlib
import itertools
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from types import TracebackType
from typing import IO, Any

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

READY_PREFIX = "SIM_SERVER_READY "
_ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/embeddings": "embeddings"}
_OUTCOMES = {
    200: "responses_ok",
    400: "bad_requests",
    401: "unauthorized",
    429: "rate_limited",
    500: "errors",
}
_COUNTERS = ("requests", *_OUTCOMES.values(), "in_flight", "peak_in_flight")
_COUNTERS += ("inputs_embedded", "completion_tokens", "stream_requests")
_WORD = re.compile(r"\w+")
_SOURCE_BLOCK = re.compile(r"^\[(\d+)\]\s*(?:\(source: [^\n]*?\)\s)?(.*)$", re.DOTALL)
_REWRITE_COUNT = re.compile(r"Return exactly (\d+) search queries")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


@dataclasses.dataclass
class SimConfig:
    """Runtime settings; every field can be changed with `POST /config`."""

    chat_ms: float = 300.0
    token_ms: float = 0.0
    embed_ms: float = 50.0
    embed_input_ms: float = 0.0
    dim: int = 384
    max_in_flight: int = 0  # 0 = unlimited
    rate_limit_fraction: float = 0.0
    error_fraction: float = 0.0
    retry_after: float = 1.0  # seconds, sent as Retry-After and retry-after-ms on 429
    seed: int = 0
    api_key: str | None = None


@functools.lru_cache(maxsize=65536)
def _token_slot(token: str, dim: int) -> tuple[int, float]:
    # blake2b, not hash(): Python's str hash is salted per process, vectors must match across runs.
    value = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
    return value % dim, -1.0 if value >> 63 else 1.0


def embed_text(text: str, dim: int) -> np.ndarray:
    """Hashed bag-of-words vector, L2-normalised; texts sharing words get a high cosine similarity."""
    vector = np.zeros(dim, dtype=np.float32)
    for token in _WORD.findall(text.lower()):
        index, sign = _token_slot(token, dim)
        vector[index] += sign
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:  # empty text (or tokens that cancel out): a valid unit vector instead of NaNs
        vector[0] = 1.0
        return vector
    return vector / norm


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def _first_sentence(text: str) -> str:
    return _SENTENCE_END.split(text.strip(), maxsplit=1)[0]


def answer_for(messages: list[dict[str, Any]]) -> str:
    """The deterministic reply to a conversation: cite sources, rewrite queries, or echo the question."""
    user = next((_text_of(m) for m in reversed(messages) if m.get("role") == "user"), "")
    system = "\n".join(_text_of(m) for m in messages if m.get("role") in ("system", "developer"))
    lines = user.split("\n")
    if "Sources:" in lines:
        sources: dict[int, str] = {}
        for block in "\n".join(lines[lines.index("Sources:") + 1 :]).split("\n\n"):
            match = _SOURCE_BLOCK.match(block.strip())
            if match:
                sources.setdefault(int(match.group(1)), match.group(2))
        if 1 in sources:
            parts = [f"{_first_sentence(sources[n])} [{n}]" for n in (1, 2) if n in sources]
            return " ".join(parts)
    count = _REWRITE_COUNT.search(system)
    if count and "alternative search queries" in system:
        question = user.strip()
        return "\n".join(f"{question} (variant {i})" for i in range(1, int(count.group(1)) + 1))
    return f"Simulated answer: {user[:200]}"


def _pieces(content: str) -> list[str]:
    # Each piece keeps its leading whitespace so the streamed deltas concatenate to the exact content.
    return re.findall(r"\s*\S+|\s+$", content)


def _tool_calls(reply: dict[str, Any]) -> list[dict[str, Any]]:
    """Scripted `{"name", "arguments"}` calls in the OpenAI wire shape, arguments as a JSON string."""
    calls = []
    for i, call in enumerate(reply.get("tool_calls") or []):
        arguments = call.get("arguments", {})
        function = {
            "name": call["name"],
            "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
        }
        calls.append({"id": f"call_sim_{i}", "type": "function", "function": function})
    return calls


def _error_body(message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class SimState:
    """Config, counters, scripted replies and the seeded RNG shared by every request of one server."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.stats: dict[str, dict[str, int]] = {
            name: dict.fromkeys(_COUNTERS, 0) for name in ("chat", "embeddings")
        }
        self.peak_in_flight = 0
        self.scripts: list[dict[str, Any]] = []
        self.rng = random.Random(config.seed)
        self.ids = itertools.count(1)

    @property
    def in_flight(self) -> int:
        return sum(s["in_flight"] for s in self.stats.values())

    def reset(self) -> None:
        # Requests still in flight keep their count, so in_flight never goes negative when they finish.
        for counters in self.stats.values():
            for name in _COUNTERS:
                if name != "in_flight":
                    counters[name] = counters["in_flight"] if name == "peak_in_flight" else 0
        self.peak_in_flight = self.in_flight
        self.scripts.clear()
        self.rng = random.Random(self.config.seed)
        self.ids = itertools.count(1)

    def update(self, settings: dict[str, Any]) -> None:
        unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(SimConfig)})
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(unknown)}")
        for name, value in settings.items():
            if name == "api_key":
                self.config.api_key = None if value in (None, "") else str(value)
            else:  # coerce through the field's default type so "0.5" and 1 both work
                setattr(self.config, name, type(getattr(SimConfig(), name))(value))
        if "seed" in settings:
            self.rng = random.Random(self.config.seed)

    def snapshot(self) -> dict[str, Any]:
        total = {name: sum(s[name] for s in self.stats.values()) for name in _COUNTERS}
        total["peak_in_flight"] = self.peak_in_flight  # the true peak, not the sum of per-endpoint peaks
        return {
            **{k: dict(v) for k, v in self.stats.items()},
            "total": total,
            "peak_in_flight": self.peak_in_flight,
        }

    def rejection(self, scope: Scope, endpoint: str | None) -> Response | None:
        """The fault response for a request arriving now, if any: auth first, then rate limits, then 500s."""
        config = self.config
        if config.api_key is not None:
            headers = dict(scope["headers"])
            if headers.get(b"authorization", b"").decode() != f"Bearer {config.api_key}":
                body = _error_body("Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
                return JSONResponse(body, status_code=401)
        if endpoint is None:
            return None
        over_limit = 0 < config.max_in_flight <= self.in_flight
        # One draw per configured fraction, so enabling one fault does not shift the other's sequence.
        if over_limit or (config.rate_limit_fraction > 0 and self.rng.random() < config.rate_limit_fraction):
            headers = {
                "Retry-After": str(math.ceil(config.retry_after)),
                "retry-after-ms": str(round(config.retry_after * 1000)),
            }
            body = _error_body(
                "Rate limit reached (simulated).", "rate_limit_exceeded", "rate_limit_exceeded"
            )
            return JSONResponse(body, status_code=429, headers=headers)
        if config.error_fraction > 0 and self.rng.random() < config.error_fraction:
            body = _error_body("The server had an error (simulated).", "server_error", None)
            return JSONResponse(body, status_code=500)
        return None


class _Accounting:
    """ASGI wrapper: faults at arrival, in-flight from arrival to the last byte, outcomes by status code."""

    def __init__(self, app: ASGIApp, state: SimState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        endpoint = _ENDPOINTS.get(path)
        status = 0

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        counters = self.state.stats.get(endpoint or "", {})
        if counters:
            counters["requests"] += 1
        rejection = self.state.rejection(scope, endpoint)
        # Rejected requests never count as in flight: a burst of 429s must not inflate the load it reports.
        admitted = rejection is None and bool(counters)
        if admitted:
            counters["in_flight"] += 1
            counters["peak_in_flight"] = max(counters["peak_in_flight"], counters["in_flight"])
            self.state.peak_in_flight = max(self.state.peak_in_flight, self.state.in_flight)
        try:
            await (rejection or self.app)(scope, receive, send_and_record)
        finally:  # also on cancellation, when the client disconnects mid-stream
            if admitted:
                counters["in_flight"] -= 1
            if counters and status in _OUTCOMES:
                counters[_OUTCOMES[status]] += 1


class _BadRequest(Exception):
    """Turned into a 400 with an OpenAI-style error body."""


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise _BadRequest(f"invalid JSON body: {exc}") from exc
    if not isinstance(body, dict):
        raise _BadRequest("the JSON body must be an object")
    return body


async def _bad_request(request: Request, exc: Exception) -> Response:
    return JSONResponse(_error_body(str(exc), "invalid_request_error", None), status_code=400)


def build_app(state: SimState) -> ASGIApp:
    """The ASGI app: OpenAI endpoints under /v1, control endpoints (/stats, /config, /reset, /script) at the root."""

    async def embeddings(request: Request) -> Response:
        body = await _json_body(request)
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not all(isinstance(text, str) for text in inputs):
            raise _BadRequest("input must be a string or a list of strings")
        config = state.config
        dim = int(body.get("dimensions") or config.dim)
        await asyncio.sleep((config.embed_ms + config.embed_input_ms * len(inputs)) / 1000)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(inputs):
            vector = embed_text(text, dim)
            encoded: Any = (
                base64.b64encode(vector.astype("<f4").tobytes()).decode() if as_base64 else vector.tolist()
            )
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(_WORD.findall(text)) for text in inputs)
        state.stats["embeddings"]["inputs_embedded"] += len(inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return JSONResponse(
            {"object": "list", "data": data, "model": body.get("model", "sim-embed"), "usage": usage}
        )

    async def chat(request: Request) -> Response:
        body = await _json_body(request)
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise _BadRequest("messages must be a list of objects")
        reply = state.scripts.pop(0) if state.scripts else {"content": answer_for(messages)}
        content: str | None = reply.get("content")
        tool_calls = _tool_calls(reply)
        finish = "tool_calls" if tool_calls else "stop"
        # Whitespace tokens: crude, but deterministic and good enough for usage and token_ms latency.
        completion = len((content or "").split()) + sum(
            len(c["function"]["arguments"].split()) for c in tool_calls
        )
        prompt = sum(len(_text_of(m).split()) for m in messages)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        base = {
            "id": f"chatcmpl-sim{next(state.ids)}",
            "created": int(time.time()),
            "model": body.get("model"),
        }
        config, counters = state.config, state.stats["chat"]
        if not body.get("stream"):
            await asyncio.sleep((config.chat_ms + config.token_ms * completion) / 1000)
            counters["completion_tokens"] += completion
            message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
            if tool_calls:
                message["tool_calls"] = tool_calls
            choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            return JSONResponse({**base, "object": "chat.completion", "choices": [choice], "usage": usage})

        counters["stream_requests"] += 1
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            payload: dict[str, Any] = {**base, "object": "chat.completion.chunk", "choices": [choice]}
            if include_usage:
                payload["usage"] = None
            return f"data: {json.dumps(payload)}\n\n"

        async def events() -> AsyncIterator[str]:
            # Latency lives in the generator: headers go out at once, the first token after chat_ms (like TTFT).
            await asyncio.sleep(config.chat_ms / 1000)
            pieces = _pieces(content or "")
            for i, piece in enumerate(pieces):
                if i:
                    await asyncio.sleep(config.token_ms / 1000)
                yield chunk({"role": "assistant", "content": piece} if i == 0 else {"content": piece})
                counters["completion_tokens"] += 1
            if tool_calls:
                deltas = [{"index": i, **call} for i, call in enumerate(tool_calls)]
                yield chunk({"role": "assistant", "content": None, "tool_calls": deltas})
            yield chunk({}, finish)
            if include_usage:
                payload: dict[str, Any] = {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [],
                    "usage": usage,
                }
                yield f"data: {json.dumps(payload)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    async def models(request: Request) -> Response:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "sim"}
            for name in ("sim-chat", "sim-embed")
        ]
        return JSONResponse({"object": "list", "data": data})

    async def stats(request: Request) -> Response:
        return JSONResponse(state.snapshot())

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse(state.snapshot())

    async def config(request: Request) -> Response:
        if request.method == "POST":
            try:
                state.update(await _json_body(request))
            except (TypeError, ValueError) as exc:
                raise _BadRequest(str(exc)) from exc
        return JSONResponse(dataclasses.asdict(state.config))

    async def script(request: Request) -> Response:
        responses = (await _json_body(request)).get("responses")
        if not isinstance(responses, list) or not all(
            isinstance(r, dict)
            and ("content" in r or "tool_calls" in r)
            and all(isinstance(call, dict) and "name" in call for call in r.get("tool_calls") or [])
            for r in responses
        ):
            raise _BadRequest('responses must be a list of {"content": ...} or {"tool_calls": [...]} objects')
        state.scripts.extend(responses)
        return JSONResponse({"queued": len(state.scripts)})

    routes = [
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/reset", reset, methods=["POST"]),
        Route("/config", config, methods=["GET", "POST"]),
        Route("/script", script, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={_BadRequest: _bad_request})
    return _Accounting(app, state)


class _ReadyServer(uvicorn.Server):
    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        # The bound port is only known now (port 0); one flushed line tells the parent we accept connections.
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        sys.stdout.write(f"{READY_PREFIX}http://{host}:{port}\n")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mini.testing.sim_server", description=__doc__)
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


class SimServer:
    """Runs the simulator in a subprocess (its own GIL and event loop) and talks to it with urllib."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 20.0, **settings: Any
    ):
        SimState(SimConfig()).update(settings)  # fail fast on unknown names, before any process starts
        self.settings = settings
        self.host, self.port, self.startup_timeout = host, port, startup_timeout
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> SimServer:
        argv = [sys.executable, "-m", "mini.testing.sim_server", f"--host={self.host}", f"--port={self.port}"]
        for name, value in self.settings.items():
            if value is not None:
                argv += [f"--{name.replace('_', '-')}", str(value)]
        # stderr goes to a file, not a pipe: an unread pipe would block the server once 64 KiB of logs pile up.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process; closed in stop()
        self._process = subprocess.Popen(
            [*argv, "--exit-on-stdin-eof"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr
        )
        try:
            self.url = self._read_ready_line()
        except BaseException:
            self.stop()
            raise
        return self

    def _read_ready_line(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout

        # readline() has no timeout; a daemon thread does, and it ends at EOF once stop() ends the process.
        lines: list[bytes] = []
        reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.startup_timeout)
        if not lines:
            raise RuntimeError(f"sim server not ready after {self.startup_timeout} s:\n{self.logs()}")
        line = lines[0].decode()
        if not line.startswith(READY_PREFIX):
            code = self._process.wait(5) if not line else self._process.poll()
            raise RuntimeError(
                f"sim server failed to start (exit code {code}, output {line!r}):\n{self.logs()}"
            )
        return line.removeprefix(READY_PREFIX).strip()

    def logs(self) -> str:
        """What the server wrote to stderr so far (warnings, tracebacks)."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def stop(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is not None:
            with process:  # leaving the block closes the pipes and reaps the child, so no zombie is left
                process.terminate()
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ValueError(f"sim server {method} {path} failed: {exc.code} {exc.read().decode()}") from exc

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")

    def reset(self) -> dict[str, Any]:
        return self._call("POST", "/reset", {})

    def config(self) -> dict[str, Any]:
        return self._call("GET", "/config")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change latency/fault settings of the running server; returns the effective config."""
        return self._call("POST", "/config", settings)

    def script(self, responses: list[dict[str, Any]]) -> dict[str, Any]:
        """Queue chat replies, served first-in first-out before the built-in rules."""
        return self._call("POST", "/script", {"responses": responses})


if __name__ == "__main__":
    main()
