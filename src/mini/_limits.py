"""Limits and retries for remote providers: one `Limiter` per endpoint, shared by every caller of it.

A `Limiter` bounds what one process sends to one provider endpoint (a base URL with one credential): embed,
rewrite, rerank, generate and eval calls all queue at the same gate, so together they never exceed the cap.

- **In flight**: an adaptive cap (AIMD). A 429 or an "overloaded" answer lowers it to the number of our
  requests the provider was still serving when it refused one (never by more than half per refusal), so a
  burst against a provider capped at 16 teaches the limiter 16 after one wave. A refusal of a request sent
  with fewer in flight than a recent success had is not about concurrency (random 429s) and leaves the cap
  alone. After `hold_seconds` without lowering, each success while the cap is in use adds 1/cap (about +1
  per round trip), up to `max_in_flight`.
- **Rates**: optional requests/min and tokens/min budgets, paced with GCRA (a token bucket kept as one
  timestamp), shared across event loops and threads.
- **Retries**: only 429, 408/409, 5xx, timeouts and connection errors; full-jitter exponential backoff; a
  provider's `Retry-After` is a floor with jitter on top, so requests refused together do not return together;
  bounded attempts and a total deadline. The slot is released while waiting. SDK-level retries stay off so
  this is the one retry policy.

**Across processes**: with `MINI_REDIS_URL` set (or `share_limits(url)`), the in-flight cap, the rates and
the adaptive cap live in Redis (`mini._limits_redis`), so N server replicas together respect one provider cap.
The maths stays here; the Redis gate only replaces where the counts are kept.

The retry maths (`backoff_delay`, `is_retryable`) is pure and tested without an event loop. Why not tenacity
and aiolimiter (the plan's choice): the retry loop has to release the slot while sleeping and feed each outcome
to the adaptive cap, which leaves tenacity only the 10-line loop itself; aiolimiter's buckets hold futures of
one event loop, but the sync facade's portal loop and the user's loop share one provider budget.

~500 lines: the limiter, its in-process gate and the registry of limiters per endpoint belong together (the
registry decides which limiter, with which gate, a model gets); the next cut is that registry (`limiter_for`,
`share_limits`) into its own module.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from mini._checks import at_least, positive
from mini._portal import PerLoop
from mini.errors import (
    ProviderConnectionError,
    ProviderServerError,
    ProviderStatusError,
    RateLimitError,
)

if TYPE_CHECKING:
    from mini._limits_redis import RedisLimits

T = TypeVar("T")
log = logging.getLogger("mini.limits")

# Which attempt the current task is making (1 = first). Transports put retries in a header for the provider's
# logs and the simulator's retry accounting.
current_attempt: contextvars.ContextVar[int] = contextvars.ContextVar("mini_attempt", default=1)

OVERLOADED_STATUSES = frozenset({503, 529})  # "overloaded": a capacity signal like 429, not a random fault


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 4  # first try + 3 retries
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0  # never wait longer than this for one Retry-After
    deadline: float | None = 120.0  # give up when the next wait would end after this many seconds in total


@dataclass(frozen=True, slots=True)
class AdaptiveConfig:
    """AIMD knobs. `enabled=False` keeps the cap fixed at `max_in_flight`."""

    enabled: bool = True
    min_in_flight: int = 1
    decrease_floor: float = 0.5  # one refusal never cuts the cap below this fraction of it
    hold_seconds: float = 5.0  # no increase this long after a decrease: probing costs a refused request


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, (RateLimitError, ProviderServerError, ProviderConnectionError)):
        return True
    return isinstance(exc, ProviderStatusError) and exc.status_code in (408, 409)


def is_overload(exc: BaseException) -> bool:
    """Refusals that say "too much from you right now": they lower the adaptive cap."""
    if isinstance(exc, RateLimitError):
        return True
    return isinstance(exc, ProviderStatusError) and exc.status_code in OVERLOADED_STATUSES


def backoff_delay(
    attempt: int, policy: RetryPolicy, *, retry_after: float | None = None, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry number `attempt` (1-based).

    Without Retry-After: full jitter, uniform(0, min(max_backoff, initial * 2**(attempt-1))).
    With Retry-After: the provider's value (capped) plus up to 50% jitter (at most 2 s), never less than asked.
    """
    rand = (rng or random).random()
    if retry_after is not None and retry_after >= 0:
        base = min(retry_after, policy.max_retry_after)
        return base + rand * min(0.5 * base + 0.05, 2.0)
    ceiling = min(policy.max_backoff, policy.initial_backoff * (2 ** (attempt - 1)))
    return rand * ceiling


class RateBudget:
    """`per_minute` units (requests or tokens) a minute, bursts up to `burst` units; GCRA, thread-safe.

    `reserve(n)` books n units and says how long to wait before using them: callers are served in booking
    order without holding any event-loop object, so one budget serves every loop and thread of the process.
    """

    def __init__(self, per_minute: float, burst: float | None = None) -> None:
        positive(per_minute=per_minute)
        self.interval = 60.0 / per_minute  # seconds per unit
        # Default burst: ten seconds' worth. A full minute at once would trip providers' per-second limits.
        self.burst = max(1.0, burst if burst is not None else per_minute / 6)
        self._tat = 0.0  # theoretical arrival time: when the bucket is empty again
        self._lock = threading.Lock()

    def reserve(self, amount: float = 1.0, now: float | None = None) -> float:
        with self._lock:
            now = time.monotonic() if now is None else now
            tat = max(self._tat, now) + amount * self.interval
            self._tat = tat
            return max(0.0, tat - now - self.burst * self.interval)


class Gate(Protocol):
    """What a `Limiter` needs of an in-flight gate: this one (in-process) or `mini._limits_redis.RedisGate`."""

    @property
    def in_flight(self) -> int: ...

    async def acquire(self) -> int: ...

    def release(self) -> None: ...

    def busy(self) -> bool: ...

    async def others_in_flight(self) -> int: ...


class _Gate:
    """The in-flight gate of one event loop: FIFO waiters, admitted while in_flight < the limiter's cap."""

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter
        self.in_flight = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> int:
        """Wait for a slot; returns the request's level (in flight, itself included, when admitted)."""
        if not self.waiters and self.in_flight < self.limiter.cap:
            self.in_flight += 1
            return self.in_flight
        future = asyncio.get_running_loop().create_future()
        self.waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # admitted just as we were cancelled: hand the slot on
            else:
                with contextlib.suppress(ValueError):
                    self.waiters.remove(future)
            raise
        return self.in_flight

    def busy(self) -> bool:
        """Is the cap in use (all slots taken, or callers waiting)? Only then is more concurrency worth trying."""
        return self.in_flight >= self.limiter.cap or bool(self.waiters)

    async def others_in_flight(self) -> int:
        """Requests in flight besides the caller's own (the provider's load from us when it refused one)."""
        return self.in_flight - 1

    def release(self) -> None:
        self.in_flight -= 1
        self.wake()

    def wake(self) -> None:
        while self.waiters and self.in_flight < self.limiter.cap:
            future = self.waiters.popleft()
            if not future.done():
                self.in_flight += 1
                future.set_result(None)


@dataclass
class LimiterStats:
    """Counters for tests, benchmarks and debugging (not thread-exact; good enough to read)."""

    calls: int = 0
    attempts: int = 0
    retries: int = 0
    refused: int = 0  # 429 / overloaded answers
    failures: int = 0  # calls that raised after all attempts
    peak_in_flight: int = 0
    # The latest cap changes (time, cap): bounded, a long-running process changes its cap without end.
    cap_history: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=256))


class Limiter:
    """Bounds requests in flight to one endpoint, paces rates, adapts to refusals, retries what is transient."""

    def __init__(
        self,
        name: str,
        max_in_flight: int,
        policy: RetryPolicy | None = None,
        *,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        adaptive: AdaptiveConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        shared: RedisLimits | None = None,
    ) -> None:
        """`clock` (monotonic seconds) times the adaptive hold and the retry deadline; tests inject a manual one.
        `shared`: keep the in-flight count, rates and adaptive cap in Redis, for every process that uses it."""
        at_least(1, max_in_flight=max_in_flight)
        self.clock = clock
        self.name = name
        self.max_in_flight = max_in_flight
        self.policy = policy or RetryPolicy()
        self.adaptive = adaptive or AdaptiveConfig()
        self.requests = RateBudget(requests_per_minute) if requests_per_minute else None
        self.tokens = RateBudget(tokens_per_minute) if tokens_per_minute else None
        self._cap = float(max_in_flight)
        self.cap_configured = True  # False: max_in_flight is the default, which a configured cap replaces
        self._last_decrease = -float("inf")
        # The most requests we had in flight when one of them succeeded, recently: refusals at or below it
        # cannot be about our concurrency.
        self._proven_level = 0
        self._proven_at = -float("inf")
        self.shared = shared
        self._gates: PerLoop[Gate] = PerLoop(
            (lambda: shared.gate(self)) if shared is not None else (lambda: _Gate(self))
        )
        self.stats = LimiterStats()

    @property
    def cap(self) -> int:
        """The in-flight cap in force now (<= max_in_flight; lower after refusals)."""
        return max(1, int(self._cap))

    def in_flight(self) -> int:
        """Requests of the running loop in flight through this limiter."""
        return self._gates.get().in_flight

    # --- adaptive cap -------------------------------------------------------------------------------------

    def _set_cap(self, value: float, why: str) -> None:
        before = self.cap
        self._cap = value
        if self.cap != before:
            self.stats.cap_history.append((self.clock(), self.cap))
            log.debug("%s: in-flight cap %d -> %d (%s)", self.name, before, self.cap, why)

    def _on_refused(self, level: int, others_in_flight: int) -> None:
        """A request sent as our `level`-th in flight was refused while `others_in_flight` were still out."""
        self.stats.refused += 1
        if not self.adaptive.enabled:
            return
        now = self.clock()
        if level <= self._proven_level and now - self._proven_at < self.adaptive.hold_seconds:
            # We recently succeeded with more requests in flight than this one had: the refusal is not about
            # our concurrency (a random 429, a per-minute quota blip). Backing off the retry is enough.
            log.debug("%s: refused at level %d <= proven %d, cap kept", self.name, level, self._proven_level)
            return
        # A capacity signal: the provider refused us while serving `others_in_flight` of our requests, so its
        # capacity for us is at most that. One refusal never more than halves the cap.
        target = max(others_in_flight, self._cap * self.adaptive.decrease_floor, self.adaptive.min_in_flight)
        self._last_decrease = now
        if target < self._cap:
            self._set_cap(target, f"refused at level {level} with {others_in_flight} others in flight")

    def adopt_shared_cap(self, cap: float, since_decrease: float | None) -> None:
        """The cap (and the age of its last decrease) as every process sharing it sees it (Redis)."""
        if since_decrease is not None:
            self._last_decrease = max(self._last_decrease, self.clock() - since_decrease)
        if cap != self._cap:
            self._set_cap(cap, "the shared cap")

    async def _refused(self, gate: Gate, level: int) -> None:
        decreased = self._last_decrease
        self._on_refused(level, await gate.others_in_flight())
        if self.shared is not None and self._last_decrease != decreased:
            await self.shared.lowered(self)

    async def _succeeded(self, gate: Gate, level: int) -> None:
        before = self._cap
        self._on_success(gate, level)
        if self.shared is not None and self._cap > before:
            await self.shared.raised(self, before)

    def _on_success(self, gate: Gate, level: int) -> None:
        now = self.clock()
        if level >= self._proven_level or now - self._proven_at >= self.adaptive.hold_seconds:
            self._proven_level, self._proven_at = level, now
        if not self.adaptive.enabled or self._cap >= self.max_in_flight:
            return
        if now - self._last_decrease < self.adaptive.hold_seconds:
            return
        # Only a cap in use is evidence that more would help; an idle one stays where it was learnt.
        if not gate.busy():
            return
        self._set_cap(min(float(self.max_in_flight), self._cap + 1.0 / self._cap), "additive increase")

    # --- calls --------------------------------------------------------------------------------------------

    async def _pace(self, tokens: int) -> None:
        if self.shared is not None:
            wait = await self.shared.pace(self, tokens)
            if wait > 0:
                await asyncio.sleep(wait)
            return
        wait = 0.0
        if self.requests is not None:
            wait = self.requests.reserve(1)
        if self.tokens is not None and tokens > 0:
            wait = max(wait, self.tokens.reserve(tokens))
        if wait > 0:
            await asyncio.sleep(wait)

    def _retry_delay(self, exc: Exception, attempt: int, started: float, policy: RetryPolicy) -> float | None:
        """Seconds to wait before retrying after `exc`, or None if it must propagate."""
        if not is_retryable(exc) or attempt >= policy.max_attempts:
            return None
        delay = backoff_delay(attempt, policy, retry_after=getattr(exc, "retry_after", None))
        if policy.deadline is not None and self.clock() - started + delay > policy.deadline:
            return None
        log.debug("%s: %s on attempt %d, retrying in %.2fs", self.name, type(exc).__name__, attempt, delay)
        return delay

    async def _open(
        self, open_fn: Callable[[], Awaitable[T]], policy: RetryPolicy | None, tokens: int
    ) -> tuple[Gate, int, T]:
        """Run `open_fn` until it succeeds or must fail; on success the slot is still held (caller releases).

        Returns the gate, the request's level (how many were in flight, itself included, when it was sent)
        and the result."""
        policy = policy or self.policy
        started = self.clock()
        self.stats.calls += 1
        attempt = 0
        while True:
            attempt += 1
            gate = self._gates.get()
            level = await gate.acquire()
            self.stats.attempts += 1
            self.stats.peak_in_flight = max(self.stats.peak_in_flight, level)
            token = current_attempt.set(attempt)
            try:
                await self._pace(tokens)
                return gate, level, await open_fn()
            except Exception as exc:
                if is_overload(exc):
                    await self._refused(gate, level)
                gate.release()
                delay = self._retry_delay(exc, attempt, started, policy)
                if delay is None:
                    self.stats.failures += 1
                    raise
                self.stats.retries += 1
            except BaseException:
                gate.release()
                raise
            finally:
                current_attempt.reset(token)
            await asyncio.sleep(delay)

    async def call(
        self, fn: Callable[[], Awaitable[T]], *, policy: RetryPolicy | None = None, tokens: int = 0
    ) -> T:
        """Run `fn()` under the limits, retrying per `policy`; the last error propagates.

        `tokens` is the request's estimated size for a tokens/min budget (prompt + max output).
        """
        gate, level, result = await self._open(fn, policy, tokens)
        try:
            await self._succeeded(gate, level)
        finally:
            gate.release()
        return result

    @contextlib.asynccontextmanager
    async def hold(
        self, open_fn: Callable[[], Awaitable[T]], *, policy: RetryPolicy | None = None, tokens: int = 0
    ) -> AsyncIterator[T]:
        """Open something long-lived (a stream) with retries and keep the slot until the block exits.

        Only opening is retried: once a stream has produced output, repeating it would duplicate tokens.
        """
        gate, level, resource = await self._open(open_fn, policy, tokens)
        try:
            yield resource
            await self._succeeded(gate, level)
        finally:
            gate.release()


def endpoint_key(base_url: str, credential: str | None) -> str:
    """Limits belong to a base URL *and* a credential (quotas are per key); the key is hashed, never kept."""
    if not credential:
        return base_url.rstrip("/")
    digest = hashlib.sha256(credential.encode()).hexdigest()[:12]
    return f"{base_url.rstrip('/')}#{digest}"


_registry_lock = threading.Lock()
_limiters: dict[tuple[str, str | None], Limiter] = {}
# Set by `share_limits`; while unset, `MINI_REDIS_URL` from the environment decides.
_shared_url: str | None = None
_shared_url_set = False


def share_limits(redis_url: str | None) -> None:
    """Keep every limiter made from now on in Redis at `redis_url` (None: in this process only), overriding
    `MINI_REDIS_URL`. The server calls it with its settings' `redis_url` (which may come from mini.toml)."""
    global _shared_url, _shared_url_set
    with _registry_lock:
        _shared_url, _shared_url_set = redis_url or None, True


def shared_limits_url() -> str | None:
    """The Redis URL limiters share their counts through, or None for in-process limits."""
    return _shared_url if _shared_url_set else (os.environ.get("MINI_REDIS_URL") or None)


# Requests in flight to one endpoint when no caller of it configured a cap.
DEFAULT_MAX_IN_FLIGHT = 64


def limiter_for(
    endpoint: str,
    *,
    max_in_flight: int | None,
    requests_per_minute: float | None = None,
    tokens_per_minute: float | None = None,
) -> Limiter:
    """The limiter shared by every caller of `endpoint` (see `endpoint_key`) in this process.

    Callers that configure the same endpoint differently share the strictest setting: the lowest cap and the
    lowest rates any of them asked for. A caller that sets no cap (`max_in_flight=None`) has no opinion: it
    gets DEFAULT_MAX_IN_FLIGHT only while no caller set one, so `LLMConfig(max_concurrency=1000)` is not held
    at 64 by the embedding model that shares its key. Retry policies stay per caller (`Limiter.call(policy=)`).
    """
    url = shared_limits_url()
    with _registry_lock:
        limiter = _limiters.get((endpoint, url))
        if limiter is None:
            shared = None
            if url is not None:
                from mini._limits_redis import RedisLimits

                shared = RedisLimits(url, endpoint)
            limiter = _limiters[(endpoint, url)] = Limiter(
                endpoint,
                max_in_flight or DEFAULT_MAX_IN_FLIGHT,
                requests_per_minute=requests_per_minute,
                tokens_per_minute=tokens_per_minute,
                shared=shared,
            )
            limiter.cap_configured = max_in_flight is not None
            return limiter
        if max_in_flight is not None and not limiter.cap_configured:
            # The first configured cap replaces the default, higher or lower; one the adaptive cap already
            # lowered after refusals climbs back to it by additive increase.
            limiter.cap_configured = True
            unreduced = limiter._cap >= limiter.max_in_flight
            limiter.max_in_flight = max_in_flight
            if unreduced or max_in_flight < limiter._cap:
                limiter._set_cap(float(max_in_flight), "a caller configured the cap")
        elif max_in_flight is not None and max_in_flight < limiter.max_in_flight:
            limiter.max_in_flight = max_in_flight
            limiter._set_cap(min(limiter._cap, float(max_in_flight)), "a caller configured a lower cap")
        if requests_per_minute and (
            limiter.requests is None or 60.0 / requests_per_minute > limiter.requests.interval
        ):
            limiter.requests = RateBudget(requests_per_minute)
        if tokens_per_minute and (
            limiter.tokens is None or 60.0 / tokens_per_minute > limiter.tokens.interval
        ):
            limiter.tokens = RateBudget(tokens_per_minute)
        return limiter


def reset_limiters() -> None:
    """Forget every shared limiter and `share_limits` (tests and benchmarks start from a clean slate)."""
    global _shared_url, _shared_url_set
    with _registry_lock:
        _limiters.clear()
        _shared_url, _shared_url_set = None, False
