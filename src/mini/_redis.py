"""The one Redis connection helper, for every component whose state is shared by several servers (`MINI_REDIS_URL`):
the server's sessions and ingestion jobs (`mini.server.redis_state`) and the provider limiter.

`redis_client(url)` returns one `redis.asyncio.Redis` per URL and event loop, made on first use (construction
does no I/O; the pool connects lazily). Every call has a bound: the socket and connect timeouts below, so a Redis
that stops answering costs a request `TIMEOUT_S`, never a hung task. `call(awaitable)` runs one command and turns
connection failures and timeouts into `SharedStateUnavailableError` (HTTP 503 in the server), so callers handle one
typed error. `redis` is an optional extra (`pip install 'mini-rag[redis]'`), imported only here, only when used.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from mini.errors import MissingDependencyError, SharedStateUnavailableError

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("mini.redis")

T = TypeVar("T")

# Per command: connecting, and waiting for a reply. Redis answers in well under a millisecond on a LAN; a second
# without a reply means it is down or overloaded, and the request is better failed (503) than left waiting.
TIMEOUT_S = 1.0
# Connections per client (per URL and loop): bounds what one server may open, whatever the fan-out above it.
MAX_CONNECTIONS = 64
# The most one `call` may take, waiting for a connection included (a backstop over the socket timeouts, for a
# reply that trickles). Commands take well under a millisecond, so even a queue of thousands for the pool's
# connections drains in milliseconds; past this the server is saturated and the request fails (503).
CALL_LIMIT_S = 3 * TIMEOUT_S

# (url, loop) -> client. Per loop: a redis.asyncio connection belongs to the loop that opened it (tests run
# several loops in one process; a server runs one).
_clients: dict[tuple[str, int], Redis] = {}


def redis_client(url: str) -> Redis:
    """The shared client for `url` on the running loop (made on first use; no I/O here)."""
    key = (url, id(asyncio.get_running_loop()))
    client = _clients.get(key)
    if client is None:
        try:
            from redis.asyncio import BlockingConnectionPool, Redis
        except ImportError as exc:
            raise MissingDependencyError("MINI_REDIS_URL", "redis", "redis") from exc
        # A blocking pool: with more commands at once than connections (512 concurrent model calls, each
        # acquiring a limiter slot), the default pool raised "Too many connections" at once; this one queues
        # them (bounded by CALL_LIMIT_S).
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=CALL_LIMIT_S,
            socket_timeout=TIMEOUT_S,
            socket_connect_timeout=TIMEOUT_S,
            decode_responses=True,
            health_check_interval=30,
        )
        client = Redis.from_pool(pool)  # the client owns the pool: aclose() closes both
        _clients[key] = client
    return client


async def close_client(url: str) -> None:
    """Close the running loop's client for `url` (the server's lifespan end)."""
    client = _clients.pop((url, id(asyncio.get_running_loop())), None)
    if client is not None:
        await client.aclose()


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

    return (ConnectionError, TimeoutError, BusyLoadingError, OSError, asyncio.TimeoutError)


async def call(awaitable: Awaitable[T], *, what: str = "redis") -> T:
    """Await one Redis command (or pipeline); unreachable or too slow -> `SharedStateUnavailableError`.

    The client's socket timeouts bound the wait; `asyncio.timeout` is the backstop (CALL_LIMIT_S)."""
    try:
        async with asyncio.timeout(CALL_LIMIT_S):
            return await awaitable
    except _unavailable_errors() as exc:
        raise SharedStateUnavailableError(
            f"{what}: Redis is unreachable ({type(exc).__name__}: {exc})"
        ) from exc


async def ping(url: str) -> str | None:
    """None when Redis at `url` answers, else the reason (for /health)."""
    try:
        await call(redis_client(url).ping())
    except SharedStateUnavailableError as exc:
        return str(exc)
    except Exception as exc:  # e.g. a wrong password: still a reason to report, not a crash of /health
        from mini.ingest.web import redact_url  # the one URL redactor; only on this error path

        return f"Redis at {redact_url(url)} refused: {type(exc).__name__}: {exc}"
    return None
