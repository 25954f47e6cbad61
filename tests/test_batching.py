"""Batching: the opportunistic `Coalescer` (idle requests run alone at once, concurrent ones share batches) and
the `LingerBatcher` (sent when full, when the linger expires, or on demand; bounded in flight). Failures and
cancellation reach exactly the callers concerned. No I/O and no wall-clock waits: batch calls are held on
events, and a linger that must not expire is an hour long."""

from __future__ import annotations

import asyncio

import pytest

from mini._batching import Coalescer, LingerBatcher

HOUR = 3600.0


class Recorder:
    """A batch call that records its batches and, when gated, holds each call until `gate` is set."""

    def __init__(self, *, gated: bool = False, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on
        self.gate = asyncio.Event()
        if not gated:
            self.gate.set()
        self.started = asyncio.Event()
        self.running = 0
        self.peak = 0

    async def __call__(self, key: str, items: list[int]) -> list[str]:
        self.batches.append(items)
        self.started.set()
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.gate.wait()
            await asyncio.sleep(0)  # a real call yields at least once
        finally:
            self.running -= 1
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [f"{key}:{i}" for i in items]

    async def unkeyed(self, items: list[int]) -> list[str]:
        return await self("k", items)


async def turns(n: int = 5) -> None:
    """Let every ready task run `n` steps (loop iterations, not time)."""
    for _ in range(n):
        await asyncio.sleep(0)


# -- Coalescer -----------------------------------------------------------------------------------------------


async def test_a_lone_request_runs_immediately_alone() -> None:
    run = Recorder()
    coalescer = Coalescer(run, max_concurrent=1)
    assert await coalescer.submit("k", 1) == "k:1"
    assert run.batches == [[1]]


async def test_concurrent_requests_share_batches_and_get_their_own_results() -> None:
    run = Recorder()
    coalescer = Coalescer(run, max_concurrent=1)
    results = await asyncio.gather(*(coalescer.submit("k", i) for i in range(20)))
    assert results == [f"k:{i}" for i in range(20)]
    assert run.batches == [list(range(20))]  # submitted in the same tick: one call serves them all


async def test_requests_arriving_while_a_batch_runs_wait_for_the_next_one_together() -> None:
    run = Recorder(gated=True)
    coalescer = Coalescer(run, max_concurrent=1)
    first = asyncio.create_task(coalescer.submit("k", 0))
    await run.started.wait()  # the first batch is now running
    rest = asyncio.gather(*(coalescer.submit("k", i) for i in range(1, 10)))
    await turns()
    run.gate.set()
    assert await first == "k:0" and await rest == [f"k:{i}" for i in range(1, 10)]
    assert run.batches == [[0], list(range(1, 10))]


async def test_keys_are_never_mixed_and_max_batch_is_respected() -> None:
    run = Recorder()
    coalescer = Coalescer(run, max_batch=4, max_concurrent=1)
    results = await asyncio.gather(*(coalescer.submit("ab"[i % 2], i) for i in range(12)))
    assert results == [f"{'ab'[i % 2]}:{i}" for i in range(12)]
    assert all(len(batch) <= 4 for batch in run.batches)
    assert all(len({i % 2 for i in batch}) == 1 for batch in run.batches)


async def test_submit_many_keeps_order_within_the_call() -> None:
    coalescer = Coalescer(Recorder())
    assert await coalescer.submit_many("k", [3, 1, 2]) == ["k:3", "k:1", "k:2"]


async def test_a_failed_batch_fails_its_callers_only() -> None:
    run = Recorder(gated=True, fail_on=7)
    coalescer = Coalescer(run, max_concurrent=1)
    first = asyncio.create_task(coalescer.submit("k", 0))
    await run.started.wait()
    doomed = [asyncio.create_task(coalescer.submit("k", i)) for i in (5, 7)]
    await turns()
    run.gate.set()
    await asyncio.wait(doomed)
    later = await coalescer.submit("k", 9)
    assert await first == "k:0" and later == "k:9"
    assert run.batches == [[0], [5, 7], [9]]
    for task in doomed:
        with pytest.raises(ValueError, match="bad item 7"):
            await task


async def test_a_cancelled_caller_is_dropped_from_its_pending_batch() -> None:
    run = Recorder(gated=True)
    coalescer = Coalescer(run, max_concurrent=1)
    first = asyncio.create_task(coalescer.submit("k", 0))
    await run.started.wait()
    cancelled = asyncio.create_task(coalescer.submit("k", 1))
    kept = asyncio.create_task(coalescer.submit("k", 2))
    await turns()
    cancelled.cancel()
    await turns()
    run.gate.set()
    assert await first == "k:0" and await kept == "k:2"
    assert run.batches == [[0], [2]]


# -- LingerBatcher -------------------------------------------------------------------------------------------


async def test_a_full_batch_is_sent_at_once_and_a_partial_one_lingers_until_flushed() -> None:
    run = Recorder()
    batcher = LingerBatcher(run.unkeyed, max_size=3, linger=HOUR)
    full = batcher.submit_many([1, 2, 3])
    partial = batcher.submit_many([4, 5])
    assert await asyncio.gather(*full) == ["k:1", "k:2", "k:3"]
    await turns()
    assert run.batches == [[1, 2, 3]] and batcher.pending == 2  # an hour's linger: still waiting
    batcher.flush()
    assert await asyncio.gather(*partial) == ["k:4", "k:5"]
    assert run.batches == [[1, 2, 3], [4, 5]]


async def test_a_partial_batch_is_sent_when_its_linger_expires() -> None:
    run = Recorder()
    batcher = LingerBatcher(run.unkeyed, max_size=100, linger=0.001)
    futures = [batcher.submit(i) for i in range(5)]
    # Nobody flushes: only the linger's timer can send it.
    assert await asyncio.gather(*futures) == [f"k:{i}" for i in range(5)]
    assert run.batches == [[0, 1, 2, 3, 4]]


async def test_at_most_concurrency_batches_in_flight_and_waiting_items_fill_the_next() -> None:
    run = Recorder(gated=True)
    batcher = LingerBatcher(run.unkeyed, max_size=4, linger=HOUR, concurrency=2)
    futures = batcher.submit_many(list(range(8)))  # two full batches: both sent
    await turns()
    assert batcher.in_flight == 2 and run.running == 2
    futures += [batcher.submit(i) for i in range(8, 13)]  # a full batch and one more: no slot for them
    await turns()
    assert batcher.in_flight == 2 and batcher.pending == 5
    run.gate.set()
    futures += batcher.submit_many([13, 14, 15])  # joins the last partial batch
    await asyncio.gather(*futures[:12])
    assert run.batches[:3] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    await batcher.aclose()  # sends what is left without lingering, and waits for it
    assert [await f for f in futures] == [f"k:{i}" for i in range(16)]
    assert run.batches[3:] == [[12, 13, 14, 15]] and run.peak == 2


async def test_sized_items_fill_batches_in_order_and_a_huge_one_goes_alone() -> None:
    sent: list[list[str]] = []

    async def flush(items: list[str]) -> list[int]:
        sent.append(items)
        return [len(i) for i in items]

    batcher = LingerBatcher(flush, max_size=10, linger=HOUR, size=len)
    async with batcher:
        futures = batcher.submit_many(["aaaa", "bbbb", "cccc", "d" * 25, "ee"])
    assert [f.result() for f in futures] == [4, 4, 4, 25, 2]
    assert sent == [["aaaa", "bbbb"], ["cccc"], ["d" * 25], ["ee"]]


async def test_a_failing_batch_fails_its_submitters_and_per_item_errors_stay_per_item() -> None:
    async def flush(items: list[int]) -> list[int | BaseException]:
        if 13 in items:
            raise RuntimeError("unlucky batch")
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]

    batcher = LingerBatcher(flush, max_size=2, linger=HOUR)
    async with batcher:
        futures = batcher.submit_many([2, 3, 12, 13, 4])
    assert futures[0].result() == 20 and futures[2].exception() is not None
    with pytest.raises(ValueError, match="odd 3"):
        futures[1].result()
    for doomed in futures[2:4]:
        with pytest.raises(RuntimeError, match="unlucky"):
            doomed.result()
    assert futures[4].result() == 40


async def test_a_submitter_that_gives_up_is_dropped_before_its_batch_is_sent() -> None:
    run = Recorder()
    batcher = LingerBatcher(run.unkeyed, max_size=10, linger=HOUR)
    kept, dropped, also_kept = batcher.submit_many([1, 2, 3])
    dropped.cancel()
    batcher.flush()
    assert (await kept, await also_kept) == ("k:1", "k:3")
    assert run.batches == [[1, 3]]


async def test_an_error_in_its_scope_cancels_what_is_pending_and_in_flight() -> None:
    run = Recorder(gated=True)
    batcher = LingerBatcher(run.unkeyed, max_size=2, linger=HOUR)
    with pytest.raises(KeyError):
        async with batcher:
            in_flight = batcher.submit_many([1, 2])
            pending = batcher.submit(3)
            await run.started.wait()
            raise KeyError("the pipeline failed")
    assert all(f.cancelled() for f in [*in_flight, pending])
    assert batcher.in_flight == 0 and batcher.pending == 0 and run.running == 0
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(4)
