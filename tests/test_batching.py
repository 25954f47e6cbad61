"""Opportunistic batching: idle requests run alone at once; concurrent ones share batches; failures and
cancellation reach exactly the callers concerned."""

from __future__ import annotations

import asyncio

import pytest

from mini._batching import Coalescer


class Recorder:
    def __init__(self, delay: float = 0.01, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay
        self.fail_on = fail_on

    async def __call__(self, key: str, items: list[int]) -> list[str]:
        self.batches.append(items)
        await asyncio.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [f"{key}:{i}" for i in items]


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
    run = Recorder()
    coalescer = Coalescer(run, max_concurrent=1)
    first = asyncio.create_task(coalescer.submit("k", 0))
    await asyncio.sleep(0.001)  # the first batch is now running
    rest = await asyncio.gather(*(coalescer.submit("k", i) for i in range(1, 10)))
    assert await first == "k:0" and rest == [f"k:{i}" for i in range(1, 10)]
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
    run = Recorder(fail_on=7)
    coalescer = Coalescer(run, max_concurrent=1)
    first = asyncio.create_task(coalescer.submit("k", 0))
    await asyncio.sleep(0)
    doomed = [asyncio.create_task(coalescer.submit("k", i)) for i in (5, 7)]
    await asyncio.sleep(0.03)
    later = await coalescer.submit("k", 9)
    assert await first == "k:0" and later == "k:9"
    for task in doomed:
        with pytest.raises(ValueError, match="bad item 7"):
            await task


async def test_a_cancelled_caller_is_dropped_from_its_pending_batch() -> None:
    run = Recorder(delay=0.02)
    coalescer = Coalescer(run, max_concurrent=1)
    first = asyncio.create_task(coalescer.submit("k", 0))
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(coalescer.submit("k", 1))
    kept = asyncio.create_task(coalescer.submit("k", 2))
    await asyncio.sleep(0)
    cancelled.cancel()
    assert await first == "k:0" and await kept == "k:2"
    assert run.batches == [[0], [2]]
