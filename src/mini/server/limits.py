"""Request body limit as pure ASGI middleware: 413 before a too-large body is read (or as soon as it exceeds)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """`max_bytes` for every request body; `larger` gives named paths their own (higher) limit.

    The split exists because FastAPI parses a route's JSON body on the event loop: the question routes keep a
    small limit (parsing costs the loop up to ~20 ms per MiB), the upload route a large one (it parses in a
    thread).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, *, larger: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope["path"], self.max_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)
            return
        received = 0
        started = refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not started:  # chunked uploads without a Content-Length
                    # Answer 413 now and tell the app the client left: FastAPI would turn an exception raised
                    # here into a 400, and reading the rest would defeat the limit.
                    refused = True
                    await self._refuse(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 is the response; whatever the app says after the "disconnect" is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not refused:
                raise

    async def _refuse(self, send: Send, limit: int) -> None:
        body = json.dumps(
            {"type": "too_large", "message": f"request body larger than {limit} bytes"}
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
