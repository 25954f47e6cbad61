"""The server's event streams: one frame per `StreamEvent`, keep-alives in silences, and a response that stops
the upstream stream when the client goes away."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Literal

from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from mini._sse import KEEPALIVE, KEEPALIVE_SECONDS, encode_json
from mini.errors import log_failure
from mini.server.errors import public_error, public_event
from mini.server.settings import ServerSettings
from mini.types import StreamEvent

log = logging.getLogger("mini.server")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering of the stream


def event_data(event: StreamEvent) -> Any:
    """The JSON payload of an event; a token's text is wrapped so every payload is an object or list, and an
    error is what a client may see of it (`public_event`: our type and a message for the user)."""
    if event.type == "token":
        return {"text": event.data}
    return public_event(event.data) if event.type == "error" else event.data


def error_frame(exc: BaseException) -> dict[str, str]:
    """The `error` event's data for an exception that escaped a stream (logged here, as its kind deserves)."""
    log_failure(log, "stream failed", exc)
    _, kind, message = public_error(exc)
    return {"type": kind, "message": message}


async def _frames(events: AsyncIterator[StreamEvent]) -> AsyncGenerator[bytes, None]:
    try:
        async for event in events:
            yield encode_json(event_data(event), event=event.type)
    except Exception as exc:
        # The RAG's streams answer their own failures with an `error` event; one escaping here is unexpected.
        yield encode_json(error_frame(exc), event="error")
    finally:
        # A client disconnect closes this generator (see `SSEResponse`); closing the event stream closes the
        # upstream LLM stream at once instead of letting it run to the end.
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


def sse_response(events: AsyncIterator[StreamEvent]) -> StreamingResponse:
    return SSEResponse(_frames(events))


class SSEResponse(StreamingResponse):
    """A `text/event-stream` of encoded frames, with `KEEPALIVE` after every `keepalive_s` seconds without one
    (default: the app's `ServerSettings.sse_keepalive_s`; 0: none). However the response ends (a client
    disconnect cancels it), `frames` is closed before this returns, so the upstream stream stops at once."""

    def __init__(self, frames: AsyncGenerator[bytes, None], *, keepalive_s: float | None = None) -> None:
        super().__init__(frames, media_type="text/event-stream", headers=SSE_HEADERS)
        self._frames = frames
        self._keepalive_s = keepalive_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._keepalive_s is None:
            settings = getattr(scope["app"].state, "settings", None)
            self._keepalive_s = (
                settings.sse_keepalive_s if isinstance(settings, ServerSettings) else KEEPALIVE_SECONDS
            )
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Starlette stops iterating on a disconnect but does not close the iterator (garbage collection
            # would, later): close it now. A no-op when the stream ran to its end.
            await self._frames.aclose()

    async def stream_response(self, send: Send) -> None:
        interval = self._keepalive_s or 0.0
        if interval <= 0:
            await super().stream_response(send)
            return
        # The frames are pulled and sent by this task as without keep-alives (no extra task or queue per
        # frame: this path runs once a token); a second task sends a keep-alive when the line has been quiet
        # for `interval`, the lock keeping the two `send`s from interleaving.
        sender = _KeepaliveSender(send)
        ticker = asyncio.create_task(sender.keepalives(interval), name="mini-sse-keepalive")
        try:
            await super().stream_response(sender.send)
        finally:
            ticker.cancel()
            await asyncio.wait({ticker})


_KEEPALIVE_MESSAGE: Message = {"type": "http.response.body", "body": KEEPALIVE, "more_body": True}


class _KeepaliveSender:
    """Wraps a response's `send`, noting when the last message went out and whether the body is open."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._state: Literal["new", "open", "ended"] = "new"

    async def send(self, message: Message) -> None:
        async with self._lock:
            await self._send(message)
            self._last = self._loop.time()
            if message["type"] == "http.response.start":
                self._state = "open"
            elif not message.get("more_body", False):
                self._state = "ended"

    async def keepalives(self, interval: float) -> None:
        while self._state != "ended":
            await asyncio.sleep(max(0.0, self._last + interval - self._loop.time()))
            async with self._lock:
                if self._state == "new":
                    self._last = self._loop.time()  # not started yet: look again after another interval
                elif self._state == "open" and self._loop.time() - self._last >= interval:
                    await self._send(_KEEPALIVE_MESSAGE)
                    self._last = self._loop.time()
