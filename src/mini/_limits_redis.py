"""The provider limiter's counts in Redis, so several processes (server replicas) share one provider cap.

`mini._limits.Limiter` keeps the maths (adaptive cap, GCRA pacing, retries); with `shared=RedisLimits(...)` it
keeps its counts here instead of in process memory:

- **In flight**: a sorted set of leases (member = lease id, score = expiry in Redis time). A Lua script drops
  expired leases and admits while the set is smaller than the shared cap, atomically, so N processes together
  never exceed it. Each process renews its leases every `lease_ttl / 3` seconds; a crashed process stops
  renewing and its slots come back within `lease_ttl`. Waiting does not poll tightly: a release in this
  process wakes one of its waiters at once; releases elsewhere are found by a bounded backoff with jitter (10 ms
  doubling to 250 ms, never past the earliest lease expiry).
- **Adaptive cap**: one hash per endpoint (`cap`, `decreased_at`). Every admission returns it, so each process
  mirrors the learnt cap without extra reads; a decrease is a "lower to" (min) script and an increase a
  compare-and-set, so a concurrent decrease elsewhere is never overwritten by a stale increase.
- **Rates**: the same GCRA as `RateBudget`, its one timestamp kept in Redis.

All times are Redis's own clock (`TIME` inside the scripts): replicas' clocks need not agree. Keys carry a hash
of the endpoint key (itself holding only a hash of the credential). Every call goes through `mini._redis.call`:
bounded by timeouts, and an unreachable Redis is a `SharedStateUnavailableError` (HTTP 503), never unlimited.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import random
import uuid
from typing import TYPE_CHECKING

from mini import _redis
from mini.errors import SharedStateUnavailableError

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from mini._limits import Limiter, RateBudget

log = logging.getLogger("mini.limits")

LEASE_TTL = 30.0  # seconds a crashed process's slot stays taken; renewed at a third of it
STATE_TTL = 86_400  # an endpoint unused for a day forgets its learnt cap
POLL_INITIAL = 0.01
POLL_MAX = 0.25

# KEYS: leases, state. ARGV: max_in_flight, lease_ttl, lease_id.
# -> {level (0: not admitted), cap, seconds since the last decrease, seconds until the earliest lease expires}
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local cap = tonumber(redis.call('HGET', KEYS[2], 'cap') or ARGV[1])
if cap > tonumber(ARGV[1]) then cap = tonumber(ARGV[1]) end
local since = ''
local dec = redis.call('HGET', KEYS[2], 'decreased_at')
if dec then since = tostring(now - tonumber(dec)) end
local n = redis.call('ZCARD', KEYS[1])
local ttl = tonumber(ARGV[2])
if n < math.max(1, math.floor(cap)) then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000) + 1000)
  return {n + 1, tostring(cap), since, ''}
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tostring(cap), since, tostring(tonumber(first[2]) - now)}
"""

# KEYS: leases. ARGV: lease_ttl, lease ids... -> how many were still held (XX: an expired lease is not revived).
_RENEW = """
local t = redis.call('TIME')
local until_ = tonumber(t[1]) + tonumber(t[2]) / 1e6 + tonumber(ARGV[1])
local kept = 0
for i = 2, #ARGV do
  kept = kept + redis.call('ZADD', KEYS[1], 'XX', 'CH', until_, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
return kept
"""

# KEYS: leases. -> leases alive now.
_COUNT = """
local t = redis.call('TIME')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(t[1]) + tonumber(t[2]) / 1e6)
return redis.call('ZCARD', KEYS[1])
"""

# KEYS: state. ARGV: target, state_ttl. A capacity signal: cap = min(cap, target), and the hold restarts.
_LOWER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local cap = tonumber(redis.call('HGET', KEYS[1], 'cap') or ARGV[1])
if tonumber(ARGV[1]) < cap then cap = tonumber(ARGV[1]) end
redis.call('HSET', KEYS[1], 'cap', tostring(cap), 'decreased_at', tostring(now))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return tostring(cap)
"""

# KEYS: state. ARGV: expected, new, hold_seconds, state_ttl. Compare-and-set, and never within the hold.
# -> the cap in force ('' when none is stored: the configured maximum).
_RAISE = """
local cur = redis.call('HGET', KEYS[1], 'cap')
if not cur then return '' end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local dec = tonumber(redis.call('HGET', KEYS[1], 'decreased_at') or 0)
if math.abs(tonumber(cur) - tonumber(ARGV[1])) > 1e-6 or now - dec < tonumber(ARGV[3]) then return cur end
redis.call('HSET', KEYS[1], 'cap', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return ARGV[2]
"""

# KEYS: budget. ARGV: amount, interval, burst. GCRA as in `RateBudget.reserve`: -> seconds to wait.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if tat < now then tat = now end
tat = tat + tonumber(ARGV[1]) * tonumber(ARGV[2])
redis.call('SET', KEYS[1], tostring(tat), 'PX', math.ceil((tat - now) * 1000) + 1000)
return tostring(math.max(0, tat - now - tonumber(ARGV[3]) * tonumber(ARGV[2])))
"""


def redis_prefix(endpoint: str) -> str:
    """The Redis key prefix of an endpoint: a hash, so neither URLs nor credentials appear in Redis."""
    return "mini:limits:" + hashlib.sha256(endpoint.encode()).hexdigest()[:24]


class RedisLimits:
    """One endpoint's shared counts in Redis at `url`; `Limiter(shared=...)` uses it. No I/O until used."""

    def __init__(self, url: str, endpoint: str, *, lease_ttl: float = LEASE_TTL) -> None:
        self.url = url
        self.lease_ttl = lease_ttl
        prefix = redis_prefix(endpoint)
        self.leases_key = f"{prefix}:leases"
        self.state_key = f"{prefix}:state"
        self.requests_key = f"{prefix}:rpm"
        self.tokens_key = f"{prefix}:tpm"

    def gate(self, limiter: Limiter) -> RedisGate:
        return RedisGate(limiter, self)

    async def run(self, script: str, keys: list[str], args: list[str | float], what: str) -> object:
        """Run one Lua script (EVALSHA, loaded on first use), bounded and mapped to our errors."""
        client: Redis = _redis.redis_client(self.url)
        return await _redis.call(client.register_script(script)(keys=keys, args=args), what=f"limiter {what}")

    # --- adaptive cap -------------------------------------------------------------------------------------

    async def lowered(self, limiter: Limiter) -> None:
        """`limiter` lowered its cap after a refusal: lower the shared one (never raise it) and adopt it."""
        try:
            cap = await self.run(_LOWER, [self.state_key], [repr(limiter._cap), STATE_TTL], "lower cap")
        except SharedStateUnavailableError as exc:
            log.warning("%s: could not share the lowered cap: %s", limiter.name, exc)
            return
        limiter.adopt_shared_cap(float(str(cap)), 0.0)

    async def raised(self, limiter: Limiter, before: float) -> None:
        """`limiter` raised its cap from `before` after a success: raise the shared one if nobody changed it."""
        args: list[str | float] = [repr(before), repr(limiter._cap), limiter.adaptive.hold_seconds, STATE_TTL]
        try:
            cap = str(await self.run(_RAISE, [self.state_key], args, "raise cap"))
        except SharedStateUnavailableError as exc:
            # The call itself succeeded; only the shared learning is lost, and the next admission re-reads it.
            log.debug("%s: could not share the raised cap: %s", limiter.name, exc)
            return
        limiter.adopt_shared_cap(float(cap) if cap else float(limiter.max_in_flight), None)

    # --- rates --------------------------------------------------------------------------------------------

    async def _reserve(self, key: str, budget: RateBudget, amount: float) -> float:
        wait = await self.run(_RESERVE, [key], [amount, repr(budget.interval), repr(budget.burst)], "rate")
        return float(str(wait))

    async def pace(self, limiter: Limiter, tokens: int) -> float:
        """Seconds to wait before sending: the cluster-wide requests/min and tokens/min budgets."""
        wait = 0.0
        if limiter.requests is not None:
            wait = await self._reserve(self.requests_key, limiter.requests, 1)
        if limiter.tokens is not None and tokens > 0:
            wait = max(wait, await self._reserve(self.tokens_key, limiter.tokens, tokens))
        return wait


class RedisGate:
    """One event loop's side of the shared in-flight gate: the leases it holds and its waiting callers.

    Same interface as `mini._limits._Gate`. `in_flight` counts this loop's leases; levels are cluster-wide."""

    def __init__(self, limiter: Limiter, shared: RedisLimits) -> None:
        self.limiter = limiter
        self.shared = shared
        self.leases: list[str] = []
        self.waiting = 0
        self.cluster_in_flight = 0  # as of the latest admission or count
        # Local waiters, oldest first: a release here wakes ONE of them (waking all sent every waiter's acquire
        # to Redis for one free slot: 20 acquires per call with 512 calls at cap 8). Waiters also poll for
        # slots freed elsewhere; one that stopped waiting leaves a done future behind, skipped.
        self._sleepers: collections.deque[asyncio.Future[None]] = collections.deque()
        self._keeper: asyncio.Task[None] | None = None
        self._releases: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return len(self.leases)

    @property
    def waiters(self) -> int:
        return self.waiting

    async def acquire(self) -> int:
        self.waiting += 1
        try:
            polls = 0
            while True:
                lease = uuid.uuid4().hex
                args: list[str | float] = [self.limiter.max_in_flight, self.shared.lease_ttl, lease]
                reply = await self.shared.run(
                    _ACQUIRE, [self.shared.leases_key, self.shared.state_key], args, "acquire"
                )
                level, cap, since, expires_in = (str(part) for part in reply)  # type: ignore[attr-defined]
                self.limiter.adopt_shared_cap(float(cap), float(since) if since else None)
                if int(level) > 0:
                    self.cluster_in_flight = int(level)
                    self.leases.append(lease)
                    self._keep()
                    return int(level)
                self.cluster_in_flight = max(self.cluster_in_flight, int(float(cap)))
                # Full slots: wait for a release here (immediate), or poll for one elsewhere with a bounded,
                # jittered backoff, never past the moment a crashed holder's lease expires.
                delay = min(POLL_MAX, POLL_INITIAL * 2**polls) * random.uniform(0.5, 1.0)
                if expires_in:
                    delay = min(delay, max(float(expires_in), 0.0) + 0.001)
                polls += 1
                await self._sleep(delay)
        finally:
            self.waiting -= 1

    async def _sleep(self, delay: float) -> None:
        """Until a local release picks this waiter, or `delay` passes (then poll Redis again)."""
        woken = asyncio.get_running_loop().create_future()
        if len(self._sleepers) > 2 * self.waiting + 16:  # drop the done futures of waiters that moved on
            self._sleepers = collections.deque(f for f in self._sleepers if not f.done())
        self._sleepers.append(woken)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await woken
        finally:
            woken.cancel()  # no-op if woken; else a later release skips it

    def _wake_one(self) -> None:
        while self._sleepers:
            sleeper = self._sleepers.popleft()
            if not sleeper.done():
                sleeper.set_result(None)
                return

    def busy(self) -> bool:
        return self.waiting > 0 or self.cluster_in_flight >= self.limiter.cap

    async def others_in_flight(self) -> int:
        try:
            count = await self.shared.run(_COUNT, [self.shared.leases_key], [], "count")
        except SharedStateUnavailableError:
            return max(0, self.cluster_in_flight - 1)  # the refusal still teaches something without Redis
        self.cluster_in_flight = int(str(count))
        return max(0, self.cluster_in_flight - 1)

    def release(self) -> None:
        """Give one lease back. Sync like `_Gate.release`: the ZREM runs as a task, then wakes one local waiter
        (until it lands, the slot still counts as taken: never more in flight than the cap)."""
        if not self.leases:
            return
        lease = self.leases.pop()
        task = asyncio.get_running_loop().create_task(self._release(lease))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release(self, lease: str) -> None:
        try:
            client: Redis = _redis.redis_client(self.shared.url)
            await _redis.call(client.zrem(self.shared.leases_key, lease), what="limiter release")
        except SharedStateUnavailableError as exc:
            log.warning(
                "%s: lease not released (it expires in %.0fs): %s",
                self.limiter.name,
                self.shared.lease_ttl,
                exc,
            )
        finally:
            self._wake_one()

    def _keep(self) -> None:
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.get_running_loop().create_task(self._renew_while_held())

    async def _renew_while_held(self) -> None:
        """Renew this loop's leases while it holds any, so only a dead process's leases expire."""
        while self.leases:
            await asyncio.sleep(self.shared.lease_ttl / 3)
            if not self.leases:
                break
            try:
                await self.shared.run(
                    _RENEW, [self.shared.leases_key], [self.shared.lease_ttl, *self.leases], "renew"
                )
            except SharedStateUnavailableError as exc:
                log.warning("%s: leases not renewed: %s", self.limiter.name, exc)
