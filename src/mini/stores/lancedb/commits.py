"""LanceDB commits: each under the store's writer lock, retried after a lost commit race, run to its end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa

from mini._limits import RetryPolicy, backoff_delay
from mini.errors import MiniError, StoreError
from mini.stores._common import WriterLock
from mini.stores.lancedb.sql import ID_COLUMN

if TYPE_CHECKING:
    from lancedb.table import AsyncTable

logger = logging.getLogger("mini.stores")

T = TypeVar("T")

# A commit that lost a race with another writer (one without our lock: another program, an older mini) is
# tried again from the latest version, a few times, with full-jitter backoff (0-50 ms, 0-100 ms, ...).
_CONFLICT_RETRY = RetryPolicy(max_attempts=6, initial_backoff=0.05, max_backoff=2.0, deadline=None)
# What Lance says when a commit lost such a race ("Retryable commit conflict for version 7: ...", "Commit
# conflict for version ...", "Too many concurrent writers"): the same write, retried from the newer version,
# succeeds (every write here is idempotent: merges by id, deletes by predicate, optimize, index builds).
_CONFLICT_MESSAGES = ("commit conflict", "too many concurrent writ", "please retry")


@contextmanager
def map_lancedb_errors(action: str) -> Iterator[None]:
    """Translate LanceDB/Arrow failures into `StoreError`; wraps engine calls only, never our own code.

    Lance reports engine failures as RuntimeError/ValueError/OSError (it has no exception types of its own),
    so those are mapped; our errors pass through untouched."""
    try:
        yield
    except MiniError:
        raise
    except (RuntimeError, ValueError, OSError, pa.ArrowException) as exc:
        raise StoreError(f"LanceDB {action} failed: {exc}") from exc


def is_commit_conflict(exc: BaseException | None) -> bool:
    """Whether a LanceDB failure is a lost commit race, which retrying resolves."""
    return isinstance(exc, RuntimeError | OSError | ValueError) and any(
        text in str(exc).lower() for text in _CONFLICT_MESSAGES
    )


async def _retrying(action: str, write: Callable[[], Awaitable[T]]) -> T:
    """`write()`, tried again after a commit conflict (see `_CONFLICT_RETRY`); failures as `StoreError`."""
    attempt = 1
    while True:
        try:
            with map_lancedb_errors(action):
                return await write()
        except StoreError as exc:
            if attempt >= _CONFLICT_RETRY.max_attempts or not is_commit_conflict(exc.__cause__):
                raise
            delay = backoff_delay(attempt, _CONFLICT_RETRY)
            logger.debug("LanceDB %s: commit conflict, retry %d in %.3f s", action, attempt, delay)
            attempt += 1
            await asyncio.sleep(delay)


def retrieve_quietly(task: asyncio.Future[Any]) -> None:
    # An abandoned read's or write's failure is not the cancelled caller's business; retrieved so asyncio does not log it.
    if not task.cancelled():
        task.exception()


async def commit(lock: WriterLock, action: str, write: Callable[[], Awaitable[T]]) -> T:
    """`write()` (one LanceDB commit, retried after conflicts) under the store's writer `lock`.

    Run to its end once started, like reads (`mini._tasks.to_the_end`): a cancelled caller gets its
    CancelledError at once, and the lock is released only when the native write has finished, so no other
    writer can merge against a table version that is about to change under it."""
    release = await lock.acquire()
    try:
        task = asyncio.ensure_future(_retrying(action, write))
    except BaseException:
        release()
        raise

    def finished(done: asyncio.Future[T]) -> None:
        release()
        retrieve_quietly(done)

    task.add_done_callback(finished)
    return await asyncio.shield(task)


async def delete_extra_copies(table: AsyncTable, predicate: str) -> int:
    """One commit's work for `LanceDBBackend.delete_duplicates`: of the rows matching `predicate` (an id
    batch), delete every copy of an id but the first, told apart by Lance's row address. Returns the rows
    deleted."""
    rows = await table.query().with_row_id().where(predicate).select([ID_COLUMN]).to_arrow()
    seen: set[str] = set()
    extra: list[int] = []
    addresses = rows.column("_rowid").to_pylist()
    for id_, address in zip(rows.column(ID_COLUMN).to_pylist(), addresses, strict=True):
        if id_ in seen:
            extra.append(int(address))
        seen.add(id_)
    if extra:
        # The id predicate too: whatever happens to addresses, only copies of these ids can go.
        await table.delete(f"({predicate}) AND _rowid IN ({', '.join(map(str, extra))})")
    return len(extra)
