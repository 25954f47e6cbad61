"""Structured fan-out helpers: bounded concurrency, and a failure cancels the siblings."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Iterable
from typing import TypeVar

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
