"""Structured task helpers: bounded fan-out where a failure cancels the siblings; work that outlives its caller."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


async def gather_all(aws: Iterable[Awaitable[T]], *, limit: int | None = None) -> list[T]:
    """Await all, at most `limit` at a time, results in input order.

    Unlike `asyncio.gather`, the first failure cancels the others (no orphaned work keeps a provider busy), and
    unlike `TaskGroup`, that failure is raised as itself rather than inside an ExceptionGroup, so callers can
    catch `RateLimitError` and friends directly. Cancelling the caller cancels every child.
    """
    items = list(aws)
    if not items:
        return []
    semaphore = asyncio.Semaphore(limit) if limit else None

    async def bounded(aw: Awaitable[T]) -> T:
        if semaphore is None:
            return await aw
        async with semaphore:
            return await aw

    tasks = [asyncio.ensure_future(bounded(aw)) for aw in items]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        # Wait for the cancelled children so none outlives this call.
        await asyncio.gather(*tasks, return_exceptions=True)
        for aw in items:
            # Coroutines whose task was cancelled before it started were never awaited; close them quietly.
            if inspect.iscoroutine(aw) and inspect.getcoroutinestate(aw) == inspect.CORO_CREATED:
                aw.close()


_FINISHING: set[asyncio.Future[Any]] = set()  # strong references: the loop keeps only weak ones to tasks
log = logging.getLogger("mini")


async def to_the_end(aw: Awaitable[T]) -> T:
    """Await `aw`, which runs to its end even if the caller is cancelled (the caller still gets its
    CancelledError at once): for work that must not stop half-way, like a delete whose client went away.
    A failure after the caller has gone is logged, since nobody else will see it."""
    task: asyncio.Future[T] = asyncio.ensure_future(aw)
    _FINISHING.add(task)
    task.add_done_callback(_FINISHING.discard)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_log_abandoned)
        raise


def _log_abandoned(task: asyncio.Future[Any]) -> None:
    error = None if task.cancelled() else task.exception()
    if error is not None:
        log.warning("work finished after its caller left failed: %s: %s", type(error).__name__, error)
