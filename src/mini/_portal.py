"""The one sync-over-async bridge: a private event loop in a daemon thread runs the async implementation.

Why not `asyncio.run`? It fails inside a running loop (Jupyter, FastAPI handlers, an `asyncio.run(main())`
script) and creates a new loop per call, which strands async clients bound to the previous loop. The portal
never calls `asyncio.run`: sync twins submit their coroutine to the portal loop and wait on a thread-safe
future, so they work from any thread, with or without a running loop of their own.

Async clients (HTTP pools, semaphores) are bound to the loop that created them. `PerLoop` keeps one instance
per event loop, so the same `AgenticRAG` can be used from the portal (sync twins), from the user's own loop
(`await ..._async`), and from successive `asyncio.run` calls without "attached to a different loop" errors.

This module is the only one that touches threads and event loops directly.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import functools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, Generic, ParamSpec, TypeVar

from mini.errors import UsageError

T = TypeVar("T")
P = ParamSpec("P")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None

# How long a cancelled call may take to unwind after Ctrl-C before the sync caller gives up waiting.
_CANCEL_GRACE_S = 5.0


def _portal_loop() -> asyncio.AbstractEventLoop:
    """The portal loop, started on first use (and again if a fork or shutdown left it dead)."""
    global _loop, _thread
    with _lock:
        if _loop is not None and _thread is not None and _thread.is_alive() and not _loop.is_closed():
            return _loop
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        thread = threading.Thread(target=serve, name="mini-portal", daemon=True)
        thread.start()
        started.wait()
        _loop, _thread = loop, thread
        return loop


def in_portal_thread() -> bool:
    return _thread is not None and threading.current_thread() is _thread


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on the portal loop and wait for its result; works whether or not a loop is running here.

    Context variables travel with the call. On KeyboardInterrupt the coroutine is cancelled (so its
    `finally` blocks and client cleanup run) before the interrupt propagates.
    """
    if in_portal_thread():
        coro.close()
        raise UsageError(
            "a sync Mini RAG method was called from inside an async Mini RAG call; await its _async twin instead"
        )
    loop = _portal_loop()
    # run_coroutine_threadsafe schedules through call_soon_threadsafe, which copies this thread's context.
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result()
    except BaseException:
        if not future.done():
            future.cancel()
            # Give the coroutine a moment to run its cleanup; whatever it ends with, the interrupt wins.
            with contextlib.suppress(Exception, concurrent.futures.CancelledError):
                future.result(timeout=_CANCEL_GRACE_S)
        raise


def iterate(agen: AsyncIterator[T]) -> Iterator[T]:
    """Bridge an async iterator to a sync one; the async iterator is always closed, even on early exit."""

    async def next_item() -> tuple[bool, T | None]:
        try:
            return True, await agen.__anext__()
        except StopAsyncIteration:
            return False, None

    try:
        while True:
            more, item = run(next_item())
            if not more:
                return
            yield item  # type: ignore[misc]
    finally:
        aclose = getattr(agen, "aclose", None)
        if aclose is not None:
            run(aclose())


def _name_twin(twin: Callable[..., Any], original: Callable[..., Any]) -> None:
    name = "close" if original.__name__ == "aclose" else original.__name__.removesuffix("_async")
    twin.__name__ = name
    twin.__qualname__ = (
        original.__qualname__.rpartition(".")[0] + "." + name if "." in original.__qualname__ else name
    )
    twin.__doc__ = f"Sync twin of `{original.__name__}` (same arguments; runs on the portal loop).\n\n" + (
        original.__doc__ or ""
    )


def sync_twin(original: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """The sync twin of an async function or method, with the same signature: `query = sync_twin(query_async)`.

    Twins are derived, never hand-written (psycopg's rule: async is the source of truth), so a new option of
    the async original is in its twin at once; `inspect.signature` and IDEs see the original's parameters.
    """

    @functools.wraps(original)
    def twin(*args: P.args, **kwargs: P.kwargs) -> T:
        return run(original(*args, **kwargs))

    _name_twin(twin, original)
    return twin


def iterator_twin(original: Callable[P, AsyncIterator[T]]) -> Callable[P, Iterator[T]]:
    """`sync_twin` for a function returning an async iterator: the twin returns a sync iterator (`iterate`)."""

    @functools.wraps(original)
    def twin(*args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return iterate(original(*args, **kwargs))

    _name_twin(twin, original)
    return twin


class _Entry(Generic[T]):
    __slots__ = ("closed", "guardian", "item")

    def __init__(self, item: T) -> None:
        self.item = item
        self.closed = False
        self.guardian: object = None


class PerLoop(Generic[T]):
    """One lazily created instance per running event loop (an HTTP session, a semaphore, a lock).

    With `aclose`, the instance is closed on its own loop when that loop shuts down: a guardian async
    generator is registered with the loop, and `asyncio.run`, `asyncio.Runner`, pytest-asyncio and the portal
    all finalise async generators (`loop.shutdown_asyncgens()`) while the loop still runs. So clients used
    without an explicit `aclose()` are still closed cleanly instead of leaking sockets and warnings.
    Entries of closed loops are dropped on the next access.
    """

    def __init__(
        self, factory: Callable[[], T], *, aclose: Callable[[T], Awaitable[object]] | None = None
    ) -> None:
        self._factory = factory
        self._aclose = aclose
        self._entries: dict[asyncio.AbstractEventLoop, _Entry[T]] = {}
        self._lock = threading.Lock()

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._entries.get(loop)
            if entry is None:
                for dead in [other for other in self._entries if other.is_closed()]:
                    del self._entries[dead]
                entry = self._entries[loop] = _Entry(self._factory())
                if self._aclose is not None:
                    entry.guardian = self._guard(entry, self._aclose)
            return entry.item

    @staticmethod
    def _guard(entry: _Entry[T], aclose: Callable[[T], Awaitable[object]]) -> object:
        async def guardian() -> AsyncIterator[None]:
            try:
                yield
            finally:
                if not entry.closed:
                    entry.closed = True
                    await aclose(entry.item)

        agen = guardian()
        # Step it to its first `yield` right here: that registers it with the running loop's asyncgen hooks.
        # The loop only holds it weakly; the entry keeps it alive.
        with contextlib.suppress(StopIteration):
            agen.__anext__().send(None)  # type: ignore[attr-defined]
        return agen

    def pop_current(self) -> T | None:
        """Forget the running loop's instance and return it, without closing it."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        with self._lock:
            entry = self._entries.pop(loop, None)
        if entry is None:
            return None
        entry.closed = True  # the guardian, when finalised, must not close what the caller now owns
        return entry.item

    async def aclose_current(self) -> None:
        """Close and forget the running loop's instance (a later `get()` creates a new one)."""
        item = self.pop_current()
        if item is not None and self._aclose is not None:
            await self._aclose(item)


@atexit.register
def _stop_portal() -> None:
    loop, thread = _loop, _thread
    if loop is None or thread is None or not thread.is_alive():
        return
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=2.0)
