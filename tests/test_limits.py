"""Retry maths (pure) and the limiter's bound/retry behaviour."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from mini._limits import (
    DEFAULT_MAX_IN_FLIGHT,
    AdaptiveConfig,
    Limiter,
    RateBudget,
    RetryPolicy,
    backoff_delay,
    current_attempt,
    endpoint_key,
    is_retryable,
    limiter_for,
)
from mini.errors import (
    AuthenticationError,
    BadRequestError,
    InvalidInputError,
    ProviderConnectionError,
    ProviderServerError,
    ProviderStatusError,
    ProviderTimeoutError,
    RateLimitError,
)
from tests.clock import ManualClock


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


class Attempts:
    """An async call counting its calls: call n raises `error(n)` for the first `failures` calls (every call
    when None), then returns "ok"."""

    def __init__(self, error: Callable[[int], Exception], failures: int | None = None) -> None:
        self.error, self.failures, self.calls = error, failures, 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures is None or self.calls <= self.failures:
            raise self.error(self.calls)
        return "ok"


async def test_limiter_retries_rate_limits_then_succeeds() -> None:
    limiter = Limiter("test", 2, RetryPolicy(max_attempts=4, initial_backoff=0.001, max_backoff=0.002))
    flaky = Attempts(lambda n: RateLimitError("429", retry_after=0.001), failures=2)
    assert await limiter.call(flaky) == "ok"
    assert flaky.calls == 3


async def test_limiter_does_not_retry_client_errors() -> None:
    limiter = Limiter("test", 2, RetryPolicy(max_attempts=5, initial_backoff=0.001))
    bad = Attempts(lambda n: AuthenticationError("no", status_code=401))
    with pytest.raises(AuthenticationError):
        await limiter.call(bad)
    assert bad.calls == 1


async def test_limiter_gives_up_after_max_attempts_with_the_last_error() -> None:
    limiter = Limiter("test", 1, RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.001))
    down = Attempts(lambda n: ProviderServerError(f"attempt {n}", status_code=503))
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
        assert limiter.in_flight() == 1
    assert limiter.in_flight() == 0


async def test_a_cancelled_waiter_does_not_leak_its_slot() -> None:
    limiter = Limiter("test", 1)
    release = asyncio.Event()

    async def blocker() -> None:
        await release.wait()

    first = asyncio.create_task(limiter.call(blocker))
    await asyncio.sleep(0)
    waiting = asyncio.create_task(limiter.call(blocker))
    await asyncio.sleep(0)
    waiting.cancel()
    release.set()
    await first
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert limiter.in_flight() == 0
    assert await limiter.call(lambda: asyncio.sleep(0, "free")) == "free"


def test_limiter_for_shares_one_limiter_per_endpoint_with_the_strictest_settings() -> None:
    a = limiter_for("http://x/v1", max_in_flight=8)
    assert limiter_for("http://x/v1", max_in_flight=8) is a
    assert limiter_for("http://x/v1", max_in_flight=4, requests_per_minute=600) is a
    assert (a.max_in_flight, a.cap) == (4, 4)
    assert a.requests is not None and a.requests.interval == pytest.approx(0.1)
    limiter_for("http://x/v1", max_in_flight=16, requests_per_minute=6000)  # looser: ignored
    assert a.max_in_flight == 4 and a.requests.interval == pytest.approx(0.1)
    assert limiter_for("http://y/v1", max_in_flight=8) is not a


def test_a_caller_without_a_cap_does_not_hold_back_one_that_set_it() -> None:
    """The embedding model and the chat model on one key share a limiter: a cap only one of them set wins,
    higher or lower than the default; only caps set by callers compete for the lowest."""
    chat_first = limiter_for("http://a/v1", max_in_flight=1000)
    assert limiter_for("http://a/v1", max_in_flight=None) is chat_first  # the embedder, no cap given
    assert chat_first.cap == 1000
    default_first = limiter_for("http://b/v1", max_in_flight=None)
    assert default_first.cap == DEFAULT_MAX_IN_FLIGHT
    limiter_for("http://b/v1", max_in_flight=500)
    assert (default_first.max_in_flight, default_first.cap) == (500, 500)
    limiter_for("http://b/v1", max_in_flight=200)  # a second configured cap: the lower one wins
    limiter_for("http://b/v1", max_in_flight=None)
    assert (default_first.max_in_flight, default_first.cap) == (200, 200)


def test_llm_and_embedding_models_without_caps_get_the_default_and_one_set_applies_to_both() -> None:
    from mini import EmbeddingModel, LLMConfig
    from mini.llms.base import provider_limiter

    EmbeddingModel("openai:m", base_url="http://c/v1", api_key="k")
    chat = provider_limiter(LLMConfig("openai:gpt", max_concurrency=300), "http://c/v1", "k")
    assert chat.cap == 300 and chat is limiter_for(endpoint_key("http://c/v1", "k"), max_in_flight=None)
    with pytest.raises(InvalidInputError, match="max_concurrency"):
        LLMConfig(max_concurrency=0)


def test_endpoint_keys_separate_credentials_without_keeping_them() -> None:
    one, two = endpoint_key("https://api/v1/", "sk-one"), endpoint_key("https://api/v1", "sk-two")
    assert one != two and "sk-one" not in one
    assert endpoint_key("https://api/v1/", None) == "https://api/v1"


def test_rate_budget_allows_a_burst_then_paces_evenly() -> None:
    budget = RateBudget(per_minute=600, burst=5)  # one every 0.1 s
    waits = [budget.reserve(1, now=100.0) for _ in range(8)]
    assert waits[:5] == [0.0] * 5
    assert waits[5:] == pytest.approx([0.1, 0.2, 0.3])
    assert budget.reserve(1, now=101.0) == 0.0  # refilled after a quiet second
    tokens = RateBudget(per_minute=60_000, burst=1000)
    assert tokens.reserve(1000, now=0.0) == 0.0
    assert tokens.reserve(500, now=0.0) == pytest.approx(0.5)  # 500 tokens at 1000/s


async def _refuse(limiter: Limiter, others: int) -> None:
    """A refusal while `others` of our requests are in flight (they succeed afterwards)."""
    release = asyncio.Event()

    async def hold() -> None:
        await release.wait()

    async def refused() -> None:
        raise RateLimitError("429")

    holders = [asyncio.create_task(limiter.call(hold)) for _ in range(others)]
    await asyncio.sleep(0)
    with pytest.raises(RateLimitError):
        await limiter.call(refused, policy=RetryPolicy(max_attempts=1))
    release.set()
    await asyncio.gather(*holders)


async def _wave(limiter: Limiter, accepted: int, refused: int) -> None:
    """A provider serving `accepted` requests refuses `refused` more sent at the same time (no success yet)."""
    release = asyncio.Event()

    async def served() -> None:
        await release.wait()

    async def refuse() -> None:
        await asyncio.sleep(0)
        raise RateLimitError("429")

    holders = [asyncio.create_task(limiter.call(served)) for _ in range(accepted)]
    rejected = [
        asyncio.create_task(limiter.call(refuse, policy=RetryPolicy(max_attempts=1))) for _ in range(refused)
    ]
    await asyncio.gather(*rejected, return_exceptions=True)
    release.set()
    await asyncio.gather(*holders)


async def test_one_wave_of_refusals_teaches_the_providers_cap() -> None:
    limiter = Limiter("test", 64)
    await _wave(limiter, accepted=16, refused=48)
    assert limiter.cap == 16
    assert limiter.stats.refused == 48
    caps = [cap for _, cap in limiter.stats.cap_history]
    assert caps[0] == 63 and caps[-1] == 16 and caps == sorted(caps, reverse=True)


async def test_one_refusal_never_more_than_halves_the_cap() -> None:
    limiter = Limiter("test", 64)
    await _refuse(limiter, others=3)
    assert limiter.cap == 32


async def test_refusals_below_a_level_that_recently_succeeded_keep_the_cap() -> None:
    # Random 429s: we just succeeded with 40 in flight, so a refusal with 10 in flight is not about load.
    # "Just" is by the limiter's clock, which only this test moves: a slow machine cannot age the proof.
    clock = ManualClock()
    limiter = Limiter("test", 64, adaptive=AdaptiveConfig(hold_seconds=5.0), clock=clock)
    await _refuse(limiter, others=40)  # nothing proven yet: a capacity signal
    assert limiter.cap == 40
    clock.advance(4.9)
    await _refuse(limiter, others=10)  # the 40 holders succeeded meanwhile
    assert limiter.cap == 40
    assert limiter.stats.refused == 2
    clock.advance(5.1)  # the proof is too old now: the same refusal is a capacity signal again
    await _refuse(limiter, others=10)
    assert limiter.cap == 20  # at most halved


async def test_the_cap_grows_back_additively_once_refusals_stop() -> None:
    # The hold is measured on the limiter's clock, moved only here: no machine is too slow for "inside".
    clock = ManualClock()
    limiter = Limiter("test", 8, adaptive=AdaptiveConfig(hold_seconds=5.0), clock=clock)
    await _wave(limiter, accepted=4, refused=4)
    assert limiter.cap == 4

    async def work() -> None:
        await asyncio.sleep(0)

    clock.advance(4.9)
    await asyncio.gather(*(limiter.call(work) for _ in range(40)))  # inside the hold: no growth
    assert limiter.cap == 4
    clock.advance(0.2)
    await asyncio.gather(*(limiter.call(work) for _ in range(10)))  # +1/cap per success while in use
    assert limiter.cap == 5
    await asyncio.gather(*(limiter.call(work) for _ in range(200)))
    assert limiter.cap == 8  # back to the configured max, never above
    await asyncio.gather(*(limiter.call(work) for _ in range(50)))
    assert limiter.cap == 8


async def test_an_idle_cap_does_not_grow() -> None:
    limiter = Limiter("test", 8, adaptive=AdaptiveConfig(hold_seconds=0))
    await _wave(limiter, accepted=4, refused=4)
    assert limiter.cap == 4
    for _ in range(50):  # one at a time: the cap of 4 is never in use
        await limiter.call(lambda: asyncio.sleep(0))
    assert limiter.cap == 4


async def test_adaptive_off_keeps_the_cap() -> None:
    limiter = Limiter("test", 8, adaptive=AdaptiveConfig(enabled=False))
    await _wave(limiter, accepted=2, refused=6)
    assert limiter.cap == 8


async def test_retries_know_their_attempt_number() -> None:
    limiter = Limiter("test", 2, RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.001))
    seen: list[int] = []

    async def flaky() -> None:
        seen.append(current_attempt.get())
        if len(seen) < 3:
            raise ProviderServerError("down", status_code=502)

    await limiter.call(flaky)
    assert seen == [1, 2, 3]
    assert current_attempt.get() == 1


def test_remote_limits_on_a_local_embedding_model_are_a_clear_error() -> None:
    from mini import EmbeddingModel
    from mini.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="max_concurrency only apply to remote"):
        EmbeddingModel("local:all-MiniLM-L6-v2", max_concurrency=4)


def test_embedding_limits_join_the_endpoints_shared_limiter() -> None:
    from mini import EmbeddingModel

    EmbeddingModel(
        "openai:m", base_url="http://sim/v1", api_key="k", max_concurrency=5, requests_per_minute=60
    )
    shared = limiter_for(endpoint_key("http://sim/v1", "k"), max_in_flight=64)
    assert shared.max_in_flight == 5 and shared.requests is not None
