"""Server-sent events: one `event:`/`data:` frame per `StreamEvent`, and a response that stops on disconnect."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import StreamingResponse

from mini.types import StreamEvent

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering of the stream


def frame(event: str, data: Any) -> bytes:
    """One SSE frame. JSON keeps newlines inside tokens from breaking the `data:` line."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n".encode()


def event_data(event: StreamEvent) -> Any:
    """The JSON payload of an event; a token's text is wrapped so every payload is an object or list."""
    return {"text": event.data} if event.type == "token" else event.data


async def _frames(events: AsyncIterator[StreamEvent]) -> AsyncIterator[bytes]:
    try:
        async for event in events:
            yield frame(event.type, event_data(event))
    finally:
        # A client disconnect cancels this generator (Starlette watches for it); closing the event stream
        # closes the upstream LLM stream at once instead of letting it run to the end.
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


def sse_response(events: AsyncIterator[StreamEvent]) -> StreamingResponse:
    return StreamingResponse(_frames(events), media_type="text/event-stream", headers=SSE_HEADERS)
