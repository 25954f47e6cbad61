"""Limits and retries for remote providers: one `Limiter` per endpoint, shared by every caller of it.

The retry maths is pure (`backoff_delay`, `is_retryable`) and tested without an event loop. Retries happen only
for 429, 408/409, 5xx, timeouts and connection errors, with full-jitter exponential backoff; a provider's
`Retry-After` is honoured as a floor with jitter added on top, so clients that were limited together do not
come back in lockstep. SDK-level retries are switched off so this is the one retry policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from mini._portal import PerLoop
from mini.errors import ProviderConnectionError, ProviderServerError, ProviderStatusError, RateLimitError

T = TypeVar("T")
log = logging.getLogger("mini.limits")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 4  # first try + 3 retries
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0  # never wait longer than this for one Retry-After
    deadline: float | None = 120.0  # give up when the next wait would end after this many seconds in total


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, (RateLimitError, ProviderServerError, ProviderConnectionError)):
        return True
    return isinstance(exc, ProviderStatusError) and exc.status_code in (408, 409)


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


class Limiter:
    """Bounds requests in flight to one endpoint and retries retryable failures.

    The slot is released while waiting to retry, so a backing-off request does not hold capacity.
    """

    def __init__(self, name: str, max_in_flight: int, policy: RetryPolicy | None = None) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.name = name
        self.max_in_flight = max_in_flight
        self.policy = policy or RetryPolicy()
        self._semaphores: PerLoop[asyncio.Semaphore] = PerLoop(lambda: asyncio.Semaphore(max_in_flight))

    def slot(self) -> asyncio.Semaphore:
        """The in-flight semaphore of the running loop (hold it for a whole stream)."""
        return self._semaphores.get()

    def _retry_delay(self, exc: Exception, attempt: int, started: float) -> float | None:
        """Seconds to wait before retrying after `exc`, or None if it must propagate."""
        if not is_retryable(exc) or attempt >= self.policy.max_attempts:
            return None
        delay = backoff_delay(attempt, self.policy, retry_after=getattr(exc, "retry_after", None))
        deadline = self.policy.deadline
        if deadline is not None and time.monotonic() - started + delay > deadline:
            return None
        log.debug("%s: %s on attempt %d, retrying in %.2fs", self.name, type(exc).__name__, attempt, delay)
        return delay

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run `fn()` under the limit, retrying per the policy; the last error propagates."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self.slot():
                    return await fn()
            except Exception as exc:
                delay = self._retry_delay(exc, attempt, started)
                if delay is None:
                    raise
            await asyncio.sleep(delay)

    @contextlib.asynccontextmanager
    async def hold(self, open_fn: Callable[[], Awaitable[T]]) -> AsyncIterator[T]:
        """Open something long-lived (a stream) with retries and keep the slot until the block exits.

        Only opening is retried: once a stream has produced output, repeating it would duplicate tokens.
        """
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            semaphore = self.slot()
            await semaphore.acquire()
            try:
                resource = await open_fn()
            except Exception as exc:
                semaphore.release()
                delay = self._retry_delay(exc, attempt, started)
                if delay is None:
                    raise
                await asyncio.sleep(delay)
                continue
            try:
                yield resource
            finally:
                semaphore.release()
            return


_registry_lock = threading.Lock()
_limiters: dict[tuple[str, int, RetryPolicy], Limiter] = {}


def limiter_for(endpoint: str, *, max_in_flight: int, policy: RetryPolicy | None = None) -> Limiter:
    """The limiter shared by every caller of `endpoint` (e.g. a base URL) with the same cap and policy."""
    policy = policy or RetryPolicy()
    key = (endpoint, max_in_flight, policy)
    with _registry_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _limiters[key] = Limiter(endpoint, max_in_flight, policy)
        return limiter
