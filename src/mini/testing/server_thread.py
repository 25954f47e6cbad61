"""A real uvicorn server for an ASGI app, in a background thread on 127.0.0.1 (tests and benchmarks).

    with ServerThread(create_app(rag)) as server:
        httpx.get(server.url + "/health")

The app runs on the thread's own event loop, over real TCP, with its lifespan (startup/shutdown) executed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from types import TracebackType
from typing import Any


class ServerThread:
    def __init__(
        self, app: Any, *, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 60.0
    ) -> None:
        import uvicorn

        self.config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(self.config)
        self.startup_timeout = startup_timeout
        self._thread = threading.Thread(target=self._run, name="mini-test-server", daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.url = ""

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve())
        finally:
            self.loop.close()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server thread exited during startup (see its log)")
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not start in time")
            time.sleep(0.01)
        sockets = self.server.servers[0].sockets
        host, port = sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)
