"""Retry maths (pure) and the limiter's bound/retry behaviour."""

from __future__ import annotations

import asyncio
import random

import pytest

from mini._limits import Limiter, RetryPolicy, backoff_delay, is_retryable, limiter_for
from mini.errors import (
    AuthenticationError,
    BadRequestError,
    ProviderConnectionError,
    ProviderServerError,
    ProviderStatusError,
    ProviderTimeoutError,
    RateLimitError,
)


def test_only_transient_errors_are_retryable() -> None:
    assert is_retryable(RateLimitError("slow down"))
    assert is_retryable(ProviderServerError("oops", status_code=503))
    assert is_retryable(ProviderTimeoutError("late"))
    assert is_retryable(ProviderConnectionError("refused"))
    assert is_retryable(ProviderStatusError("timeout", status_code=408))
    assert not is_retryable(AuthenticationError("bad key", status_code=401))
    assert not is_retryable(BadRequestError("bad", status_code=400))
    assert not is_retryable(ValueError("bug"))


def test_backoff_is_full_jitter_within_an_exponential_ceiling() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=8.0)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (9, 8.0)]:
        delays = [backoff_delay(attempt, policy, rng=rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling  # spread over the whole range, not a fixed value
        assert len({round(d, 6) for d in delays}) > 150


def test_backoff_honours_retry_after_as_a_floor_with_jitter_on_top() -> None:
    policy = RetryPolicy(max_retry_after=60.0)
    rng = random.Random(2)
    delays = [backoff_delay(1, policy, retry_after=2.0, rng=rng) for _ in range(200)]
    assert all(2.0 <= d <= 3.05 for d in delays)
    assert len({round(d, 6) for d in delays}) > 150  # no lockstep: clients limited together spread out
    assert backoff_delay(1, policy, retry_after=600.0, rng=rng) <= 62.0  # capped


async def test_limiter_retries_rate_limits_then_succeeds() -> None:
    limiter = Limiter("test", 2, RetryPolicy(max_attempts=4, initial_backoff=0.001, max_backoff=0.002))
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RateLimitError("429", retry_after=0.001)
        return "ok"

    assert await limiter.call(flaky) == "ok"
    assert calls == 3


async def test_limiter_does_not_retry_client_errors() -> None:
    limiter = Limiter("test", 2, RetryPolicy(max_attempts=5, initial_backoff=0.001))
    calls = 0

    async def bad() -> None:
        nonlocal calls
        calls += 1
        raise AuthenticationError("no", status_code=401)

    with pytest.raises(AuthenticationError):
        await limiter.call(bad)
    assert calls == 1


async def test_limiter_gives_up_after_max_attempts_with_the_last_error() -> None:
    limiter = Limiter("test", 1, RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.001))
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ProviderServerError(f"attempt {calls}", status_code=503)

    with pytest.raises(ProviderServerError, match="attempt 3"):
        await limiter.call(down)


async def test_limiter_bounds_calls_in_flight() -> None:
    limiter = Limiter("test", 3)
    in_flight = peak = 0

    async def work() -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1

    await asyncio.gather(*(limiter.call(work) for _ in range(20)))
    assert peak == 3


async def test_hold_keeps_the_slot_until_the_block_exits() -> None:
    limiter = Limiter("test", 1)

    async def open_stream() -> str:
        return "stream"

    async with limiter.hold(open_stream) as stream:
        assert stream == "stream"
        assert limiter.slot().locked()
    assert not limiter.slot().locked()


def test_limiter_for_shares_one_limiter_per_endpoint_and_cap() -> None:
    a = limiter_for("http://x/v1", max_in_flight=7)
    assert limiter_for("http://x/v1", max_in_flight=7) is a
    assert limiter_for("http://x/v1", max_in_flight=8) is not a
