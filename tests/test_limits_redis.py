"""The provider limiter shared through Redis: several processes (here, several `Limiter`s, as two replicas would
have) on one real redis-server together respect one in-flight cap, one learnt cap and one rate budget."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from mini import _redis
from mini._limits import Limiter, RetryPolicy, limiter_for, share_limits
from mini._limits_redis import RedisGate, RedisLimits
from mini.errors import RateLimitError, SharedStateUnavailableError
from mini.testing.services import free_port

# `redis_url` (tests/conftest.py): the session's redis-server, flushed for each test.


@pytest.fixture(autouse=True)
async def _close_client(redis_url: str) -> AsyncIterator[None]:
    yield
    await _redis.close_client(redis_url)  # the client belongs to this test's loop


def _pair(url: str, cap: int, **options: object) -> tuple[Limiter, Limiter]:
    """Two limiters of one endpoint sharing `url`, as two server processes would have them."""
    endpoint = f"http://sim-{uuid.uuid4().hex[:8]}/v1"
    return tuple(  # type: ignore[return-value]
        Limiter(endpoint, cap, shared=RedisLimits(url, endpoint), **options)  # type: ignore[arg-type]
        for _ in range(2)
    )


def _gate(limiter: Limiter) -> RedisGate:
    gate = limiter._gates.get()
    assert isinstance(gate, RedisGate)
    return gate


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait (on the loop) until `condition()` holds; fail naming `what` after 30 s."""
    for _ in range(3_000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting until {what}")


async def test_two_limiters_never_exceed_the_shared_cap_together(redis_url: str) -> None:
    a, b = _pair(redis_url, 4)
    in_flight = peak = 0
    go = asyncio.Event()

    async def fake_call() -> str:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await go.wait()
        in_flight -= 1
        return "ok"

    calls = [asyncio.ensure_future((a if i % 2 else b).call(fake_call)) for i in range(16)]
    # Four admitted, and the twelve others all refused at least once (they are polling): only then let go.
    await _until(lambda: in_flight == 4 and _gate(a).waiting + _gate(b).waiting == 12, "4 run, 12 wait")
    go.set()
    assert await asyncio.gather(*calls) == ["ok"] * 16
    assert peak == 4
    await asyncio.gather(*_gate(a)._releases, *_gate(b)._releases)
    assert await _redis.redis_client(redis_url).zcard(a.shared.leases_key) == 0  # type: ignore[union-attr]


async def test_a_crashed_holders_lease_expires_and_frees_its_slot(redis_url: str) -> None:
    endpoint = f"http://sim-{uuid.uuid4().hex[:8]}/v1"
    crashed = Limiter(endpoint, 1, shared=RedisLimits(redis_url, endpoint, lease_ttl=0.3))
    survivor = Limiter(endpoint, 1, shared=RedisLimits(redis_url, endpoint, lease_ttl=0.3))
    gate = _gate(crashed)
    await gate.acquire()
    waiting = asyncio.ensure_future(survivor.call(lambda: asyncio.sleep(0, "served")))
    await _until(lambda: _gate(survivor).waiting == 1, "the survivor waits")
    # The holder dies: it stops renewing and never releases (what a killed process leaves behind).
    assert gate._keeper is not None
    gate._keeper.cancel()
    gate.leases.clear()
    assert await waiting == "served"


async def test_a_refusal_lowers_the_cap_of_every_process(redis_url: str) -> None:
    a, b = _pair(redis_url, 4, policy=RetryPolicy(max_attempts=1))
    go = asyncio.Event()
    held = [asyncio.ensure_future(a.call(go.wait)) for _ in range(3)]
    await _until(lambda: _gate(a).in_flight == 3, "3 in flight")

    async def refused() -> None:
        raise RateLimitError("too many requests")

    with pytest.raises(RateLimitError):
        await a.call(refused)  # the provider refused our 4th while serving 3: its capacity is 3
    assert a.cap == 3
    go.set()
    await asyncio.gather(*held)
    assert b.cap == 4  # not asked yet
    await b.call(lambda: asyncio.sleep(0))
    assert b.cap == 3  # learnt from the other process, without a refusal of its own


async def test_the_rate_budget_is_shared(redis_url: str) -> None:
    # 6/min: a burst of one, then one every 10 s, cluster-wide. The waits are booked, not slept, here.
    a, b = _pair(redis_url, 4, requests_per_minute=6, tokens_per_minute=600)
    assert a.shared is not None and b.shared is not None
    assert await a.shared.pace(a, 100) == 0.0
    wait = await b.shared.pace(b, 0)  # a process with its own budget would have its burst: 0
    assert 9.0 < wait <= 10.0


async def test_redis_unreachable_is_a_typed_error_never_unlimited() -> None:
    share_limits(f"redis://127.0.0.1:{free_port()}/0")
    limiter = limiter_for("http://sim/v1", max_in_flight=4)
    called = False

    async def fake_call() -> None:
        nonlocal called
        called = True

    with pytest.raises(SharedStateUnavailableError):
        await limiter.call(fake_call)
    assert not called


async def test_more_calls_at_once_than_redis_connections_all_complete(redis_url: str) -> None:
    """Four times as many calls at once as the client has connections: each acquire queues for a connection
    (the default pool failed them at once: "Too many connections", a 503 for the user)."""
    a, b = _pair(redis_url, 8)

    async def call() -> str:
        await asyncio.sleep(0)
        return "ok"

    calls = 4 * _redis.MAX_CONNECTIONS
    assert await asyncio.gather(*((a if i % 2 else b).call(call) for i in range(calls))) == ["ok"] * calls
