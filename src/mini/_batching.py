"""Batching of concurrent requests: requests with the same key are served by one batched call.

By default there is no timer and no added latency: a request that finds its key idle runs at once, alone.
Requests that arrive while `max_concurrent` batches of their key are already running wait, and the next free
runner takes all of them (up to `max_batch`) in one call. Under load, batches grow by themselves; when idle,
nothing waits. This is how many concurrent questions share one vector-store scan instead of paying one each.

With `window` > 0 a runner first waits that long for company (micro-batching): used where one call costs
about the same for one item as for many, like an embeddings request.

`run_batch` may return an exception instance in place of an output: that item's caller gets it raised, the
others their results (per-item failures are never dropped or spread to the whole batch).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

from mini._portal import PerLoop

K = TypeVar("K", bound=Hashable)
I = TypeVar("I")  # noqa: E741 - item
O = TypeVar("O")  # noqa: E741 - output

RunBatch = Callable[[K, list[I]], Awaitable[Sequence[O | BaseException]]]


class _KeyState(Generic[I, O]):
    __slots__ = ("pending", "running")

    def __init__(self) -> None:
        self.pending: list[tuple[I, asyncio.Future[O]]] = []
        self.running = 0


class Coalescer(Generic[K, I, O]):
    """`await coalescer.submit(key, item)` returns `run_batch(key, items)[position of item]`."""

    def __init__(
        self,
        run_batch: RunBatch[K, I, O],
        *,
        max_batch: int = 256,
        max_concurrent: int = 2,
        window: float = 0.0,
    ) -> None:
        if max_batch < 1 or max_concurrent < 1:
            raise ValueError("max_batch and max_concurrent must be >= 1")
        if window < 0:
            raise ValueError("window must be >= 0")
        self._run_batch = run_batch
        self.max_batch = max_batch
        self.max_concurrent = max_concurrent
        self.window = window
        self._states: PerLoop[dict[K, _KeyState[I, O]]] = PerLoop(dict)
        self.batches = 0  # calls made, for tests and stats
        self.items = 0
        self._runners: set[asyncio.Task[None]] = set()  # strong references: the loop only keeps weak ones

    async def submit(self, key: K, item: I) -> O:
        return (await self.submit_many(key, [item]))[0]

    async def submit_many(self, key: K, items: Sequence[I]) -> list[O]:
        """Several items at once (e.g. one question's query variants); they may share a batch with others."""
        loop = asyncio.get_running_loop()
        states = self._states.get()
        state = states.get(key)
        if state is None:
            state = states[key] = _KeyState()
        futures = [loop.create_future() for _ in items]
        state.pending.extend(zip(items, futures, strict=True))
        if state.running < self.max_concurrent:
            state.running += 1
            # A runner serves whoever is pending when it looks, possibly other callers' items first.
            runner = loop.create_task(self._drain(key, state, states))
            self._runners.add(runner)
            runner.add_done_callback(self._runners.discard)
        try:
            return list(await asyncio.gather(*futures))
        except asyncio.CancelledError:
            for future in futures:
                future.cancel()  # a runner skips cancelled entries it has not taken yet
            raise

    async def _drain(self, key: K, state: _KeyState[I, O], states: dict[K, _KeyState[I, O]]) -> None:
        try:
            if self.window > 0:
                await asyncio.sleep(self.window)
            while True:
                live = [(item, fut) for item, fut in state.pending if not fut.done()]
                batch, state.pending = live[: self.max_batch], live[self.max_batch :]
                if not batch:
                    return
                self.batches += 1
                self.items += len(batch)
                try:
                    results = await self._run_batch(key, [item for item, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"batch of {len(batch)} returned {len(results)} results")
                except BaseException as exc:  # every waiter learns the outcome, even on cancellation
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, fut), result in zip(batch, results, strict=True):
                    if fut.done():
                        continue
                    if isinstance(result, BaseException):
                        fut.set_exception(result)
                    else:
                        fut.set_result(result)
        finally:
            state.running -= 1
            if state.running == 0 and not state.pending and states.get(key) is state:
                del states[key]
