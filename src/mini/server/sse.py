"""The server's event streams: one frame per `StreamEvent`, keep-alives in silences, and a response that stops
the upstream stream when the client goes away."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from mini._sse import KEEPALIVE, KEEPALIVE_SECONDS, encode_json, encode_text_json
from mini.errors import log_failure
from mini.server.errors import public_error, public_event
from mini.server.monitor import StreamGauge
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
            if event.type == "token" and isinstance(event.data, str):  # most frames: the short way
                yield encode_text_json("text", event.data, event="token")
            else:
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
        state = scope["app"].state
        if self._keepalive_s is None:
            settings = getattr(state, "settings", None)
            self._keepalive_s = (
                settings.sse_keepalive_s if isinstance(settings, ServerSettings) else KEEPALIVE_SECONDS
            )
        gauge = getattr(state, "streams", None)  # `GET /v1/stats` reports streams open and their peak
        if isinstance(gauge, StreamGauge):
            gauge.opened()
        try:
            await super().__call__(scope, receive, send)
        finally:
            if isinstance(gauge, StreamGauge):
                gauge.closed()
            # Starlette stops iterating on a disconnect but does not close the iterator (garbage collection
            # would, later): close it now. A no-op when the stream ran to its end.
            await self._frames.aclose()

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        # A task pulls the frames into `pending`; this one sends what has piled up as one body message. Idle,
        # that is one frame per message, as before; under load, the frames that arrived together (an upstream
        # read brings several tokens when the loop is late) go out in one write instead of one each: at 1,000
        # streams the socket writes and the middleware chain per message were a quarter of the server's loop
        # (bench/server_load.py --profile). Keep-alives are one timer per interval, not a task per stream.
        loop = asyncio.get_running_loop()
        pending: list[bytes] = []
        wake = asyncio.Event()
        puller = loop.create_task(_pull(self._frames, pending, wake), name="mini-sse-frames")
        interval = self._keepalive_s or 0.0
        last = loop.time()
        timer = loop.call_later(interval, wake.set) if interval > 0 else None
        try:
            while True:
                await wake.wait()
                wake.clear()
                while pending:  # more may arrive while a send waits for the socket
                    body = b"".join(pending) if len(pending) > 1 else pending[0]
                    pending.clear()
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    last = loop.time()
                if puller.done():
                    break
                if timer is not None and timer.when() <= loop.time():  # the timer woke us: quiet, or not yet
                    if loop.time() - last >= interval:
                        await send(_KEEPALIVE_MESSAGE)
                        last = loop.time()
                    timer = loop.call_at(last + interval, wake.set)
            puller.result()  # a failure of the frames themselves (`_frames` answers its own with an event)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if timer is not None:
                timer.cancel()
            puller.cancel()
            await asyncio.wait({puller})


_KEEPALIVE_MESSAGE: Message = {"type": "http.response.body", "body": KEEPALIVE, "more_body": True}


async def _pull(frames: AsyncGenerator[bytes, None], pending: list[bytes], wake: asyncio.Event) -> None:
    """Appends each frame to `pending` and wakes the sender; wakes it once more when the frames end."""
    try:
        async for frame in frames:
            pending.append(frame)
            wake.set()
    finally:
        wake.set()
