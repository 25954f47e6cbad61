"""A client that goes away cancels its request's work: pure ASGI middleware in front of every route.

Why: FastAPI runs a route to its end whatever its client does. A dropped `POST /v1/query` or non-stream
`/v1/chat/completions` kept its rewrite and answer calls running at the provider (measured: the simulator's
in-flight requests 10 -> 20 for 8 s after the clients had left). Starlette's streaming response watches for a
disconnect itself only when the ASGI server speaks spec 2.3 or older; from 2.4 it waits for a `send` to fail,
which a stream still retrieving (before its first event) never makes.

How: the body is the app's to read. Once it has been read to its end (at once for a request without one), a
watcher task takes over `receive()`: the next message can only be `http.disconnect`, which the server sends
when the client leaves (or when the response is complete, which is not a departure). A disconnect before the
response is complete cancels the request's task; that cancellation is ours and ends here, quietly. The app
still gets `http.disconnect` from `receive()` (a streaming response listens for it).

Work that must not stop half-way when its client leaves (a delete, which would leave a half-deleted document
and a stale listing) runs under `mini._tasks.to_the_end`.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("mini.server")
_DISCONNECT: Message = {"type": "http.disconnect"}


class CancelOnDisconnect:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        if scope["type"] != "http" or task is None:
            await self.app(scope, receive, send)
            return
        watch = _Watch(scope, receive, send, task)
        if not _has_body(scope):
            watch.start()
        try:
            await self.app(scope, watch.receive, watch.send)
        except asyncio.CancelledError:
            # Ours, and nobody else's: the client is gone, there is no one to answer. Anything else (the
            # server shutting down) still propagates.
            if not watch.cancelled or task.uncancel() > 0:
                raise
        else:
            if watch.cancelled:  # the app caught our CancelledError itself: withdraw the request to cancel
                task.uncancel()
        finally:
            await watch.stop()


def _has_body(scope: Scope) -> bool:
    headers = dict(scope["headers"])
    length = headers.get(b"content-length")
    return b"transfer-encoding" in headers or (length is not None and length.strip() not in (b"", b"0"))


class _Watch:
    """One request's `receive` and `send`, as the app sees them, and the watcher behind them."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, task: asyncio.Task[object]) -> None:
        self._scope = scope
        self._receive = receive
        self._send = send
        self._task = task
        self._watcher: asyncio.Task[None] | None = None
        self._inbox: list[Message] = []  # what the watcher received for the app (a body-less request's body)
        self._changed = asyncio.Event()
        self._gone = False
        self._complete = False
        self.cancelled = False

    def start(self) -> None:
        self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="mini-disconnect-watch")

    async def receive(self) -> Message:
        if self._watcher is None:
            message = await self._receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                self.start()  # the body is complete: from now on only a disconnect can come
            return message
        while not self._inbox and not self._gone:
            self._changed.clear()
            await self._changed.wait()
        return self._inbox.pop(0) if self._inbox else _DISCONNECT

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            # Set before sending: a client leaving during the last write cancels nothing.
            self._complete = True
        await self._send(message)

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                break
            self._inbox.append(message)
            self._changed.set()
        self._gone = True
        self._changed.set()
        if not self._complete:
            self.cancelled = True
            self._task.cancel()
            log.debug(
                "%s %s: the client left, its work is cancelled", self._scope["method"], self._scope["path"]
            )

    async def stop(self) -> None:
        watcher = self._watcher
        if watcher is not None and not watcher.done():
            watcher.cancel()
            await asyncio.wait({watcher})
