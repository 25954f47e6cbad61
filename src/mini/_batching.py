"""Batching of concurrent requests: `Coalescer` (opportunistic, by key) and `LingerBatcher` (size and linger).

`Coalescer`: requests with the same key are served by one batched call.

By default there is no timer and no added latency: a request that finds its key idle runs at once, alone.
Requests that arrive while `max_concurrent` batches of their key are already running wait, and the next free
runner takes all of them (up to `max_batch`) in one call. Under load, batches grow by themselves; when idle,
nothing waits. This is how many concurrent questions share one vector-store scan instead of paying one each.

With `window` > 0 a runner first waits that long for company (micro-batching): used where one call costs
about the same for one item as for many, like an embeddings request.

`LingerBatcher` is for pipelines that pay per call and fill batches from a stream (ingestion's embedding
requests and store commits): see its docstring. `CountingBudget` bounds what such a pipeline holds in flight.

Both: the batch call may return an exception instance in place of an output: that item's caller gets it
raised, the others their results (per-item failures are never dropped or spread to the whole batch).
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from mini._checks import at_least
from mini._portal import PerLoop

K = TypeVar("K", bound=Hashable)
I = TypeVar("I")  # noqa: E741 - item
O = TypeVar("O")  # noqa: E741 - output

RunBatch = Callable[[K, list[I]], Awaitable[Sequence[O | BaseException]]]


def _deliver(futures: Sequence[asyncio.Future[O]], results: Sequence[O | BaseException]) -> None:
    """Each waiter gets its own result, or its own exception; waiters that gave up are skipped."""
    for future, result in zip(futures, results, strict=True):
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


def _fail(futures: Sequence[asyncio.Future[O]], exc: BaseException) -> None:
    """Every waiter of a failed batch learns why; a cancelled batch cancels its waiters."""
    for future in futures:
        if not future.done():
            if isinstance(exc, Exception):
                future.set_exception(exc)
            else:
                future.cancel()


async def _call_batch(
    call: Callable[[], Awaitable[Sequence[O | BaseException]]], futures: Sequence[asyncio.Future[O]]
) -> None:
    """Runs one batch call and resolves its waiters; only a cancellation (or worse) is raised."""
    try:
        results = await call()
        if len(results) != len(futures):
            raise RuntimeError(f"batch of {len(futures)} returned {len(results)} results")
    except BaseException as exc:  # every waiter learns the outcome, even on cancellation
        _fail(futures, exc)
        if not isinstance(exc, Exception):
            raise
        return
    _deliver(futures, results)


@dataclass(slots=True)
class _Entry(Generic[I, O]):
    item: I
    size: int
    future: asyncio.Future[O]
    due: float  # loop time at which this entry's batch is sent even if not full


class LingerBatcher(Generic[I, O]):
    """Batches for calls that pay off only when full, like an embeddings request or a store commit.

    `submit(item)` / `submit_many(items)` return futures of `flush(items)[position]`. A batch is sent when
    `max_size` worth of items is pending (`size(item)`, 1 each by default), when its oldest item has waited
    `linger` seconds, after `flush()`, or after `close()`; at most `concurrency` batches are in flight, and
    whatever accumulates while they are gets into the next batch (under load, batches are always full).
    A batch takes pending items in order while they fit in `max_size` (at least one, however big).
    `flush` may return an exception instance for an item (its submitter alone gets it); if it raises, every
    submitter of that batch gets the error. A submitter that cancels its future is dropped if its item was
    not sent yet. Use as `async with batcher:` to bound its lifetime: a clean exit sends what is pending and
    waits for it; an error or cancellation cancels what is pending and in flight.
    """

    def __init__(
        self,
        flush: Callable[[list[I]], Awaitable[Sequence[O | BaseException]]],
        *,
        max_size: int,
        linger: float,
        concurrency: int = 1,
        size: Callable[[I], int] | None = None,
    ) -> None:
        at_least(1, max_size=max_size, concurrency=concurrency)
        at_least(0, linger=linger)
        self._flush = flush
        self.max_size = max_size
        self.linger = linger
        self.concurrency = concurrency
        self._size = size
        self._pending: deque[_Entry[I, O]] = deque()
        self._pending_size = 0
        self._in_flight: set[asyncio.Task[None]] = set()  # strong references: the loop only keeps weak ones
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self.batches = 0  # calls made, for tests and stats
        self.items = 0

    @property
    def pending(self) -> int:
        """Items submitted and not yet sent (including ones whose submitter gave up)."""
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def submit(self, item: I) -> asyncio.Future[O]:
        return self.submit_many([item])[0]

    def submit_many(self, items: Sequence[I]) -> list[asyncio.Future[O]]:
        """Several items at once, in order; they may be split across batches and share them with others."""
        if self._closed:
            raise RuntimeError("submit on a closed batcher")
        loop = asyncio.get_running_loop()
        due = loop.time() + self.linger
        futures: list[asyncio.Future[O]] = []
        for item in items:
            future: asyncio.Future[O] = loop.create_future()
            size = self._size(item) if self._size is not None else 1
            self._pending.append(_Entry(item, size, future, due))
            self._pending_size += size
            futures.append(future)
        self._pump()
        return futures

    def flush(self) -> None:
        """Send what is pending now, without waiting for the linger (as slots allow)."""
        for entry in self._pending:
            entry.due = -math.inf
        self._pump()

    def close(self) -> None:
        """No more items will come: what is pending is sent without lingering."""
        self._closed = True
        self.flush()

    async def aclose(self, *, cancel: bool = False) -> None:
        """Close; then send what is pending and wait for it, or (`cancel`) cancel what is pending and in flight."""
        self.close()
        if not cancel:
            try:
                # Closed, so all that is pending is due, and a finishing batch starts the next before it ends:
                # the set of batches in flight is empty only when everything is sent.
                while self._in_flight:
                    await asyncio.gather(*self._in_flight, return_exceptions=True)
                return
            except BaseException:
                await self.aclose(cancel=True)
                raise
        while self._pending:
            self._pending.popleft().future.cancel()
        self._pending_size = 0
        tasks = list(self._in_flight)
        for task in tasks:
            task.cancel()
        self._pump()  # disarms the timer
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> LingerBatcher[I, O]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        await self.aclose(cancel=exc_type is not None)

    def _expire(self, due: float) -> None:
        self._timer = None
        # The loop may run a timer a hair before its time (clock resolution): it is due all the same.
        self._pump(now=due)

    def _pump(self, now: float = -math.inf) -> None:
        """Start every batch that is due and has a slot; arm the timer for the next one that will be."""
        loop = asyncio.get_running_loop()
        now = max(now, loop.time())
        while self._pending and len(self._in_flight) < self.concurrency:
            while self._pending and self._pending[0].future.done():  # its submitter gave up
                self._pending_size -= self._pending.popleft().size
            if not self._pending:
                break
            if self._pending_size < self.max_size and self._pending[0].due > now:
                break
            batch = [self._pending.popleft()]
            taken = batch[0].size
            while self._pending and taken + self._pending[0].size <= self.max_size:
                entry = self._pending.popleft()
                self._pending_size -= entry.size
                if not entry.future.done():
                    batch.append(entry)
                    taken += entry.size
            self._pending_size -= batch[0].size
            self.batches += 1
            self.items += len(batch)
            task = loop.create_task(self._send(batch))
            self._in_flight.add(task)
        # With every slot busy, the batch that finishes next starts the due one: no timer needed.
        due = self._pending[0].due if self._pending and len(self._in_flight) < self.concurrency else math.inf
        if self._timer is not None and self._timer.when() != due:
            self._timer.cancel()
            self._timer = None
        if self._timer is None and math.isfinite(due):
            self._timer = loop.call_at(due, self._expire, due)

    async def _send(self, batch: list[_Entry[I, O]]) -> None:
        try:
            await _call_batch(lambda: self._flush([e.item for e in batch]), [e.future for e in batch])
        finally:
            self._in_flight.discard(asyncio.current_task())
            if not self._closed or self._pending:
                self._pump()


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
        at_least(1, max_batch=max_batch, max_concurrent=max_concurrent)
        at_least(0, window=window)
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
                items = [item for item, _ in batch]
                await _call_batch(functools.partial(self._run_batch, key, items), [fut for _, fut in batch])
        finally:
            state.running -= 1
            if state.running == 0 and not state.pending and states.get(key) is state:
                del states[key]


class CountingBudget:
    """A budget of items in flight (ingestion: chunks between parsing and the store), taken and given back in
    amounts; asking for more than the whole budget takes all of it, so one huge item still gets through."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.free = capacity
        self._changed = asyncio.Condition()

    async def acquire(self, amount: int) -> int:
        amount = min(amount, self.capacity)
        async with self._changed:
            await self._changed.wait_for(lambda: self.free >= amount)
            self.free -= amount
        return amount

    async def release(self, amount: int) -> None:
        async with self._changed:
            self.free += amount
            self._changed.notify_all()
