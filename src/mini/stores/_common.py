"""The skeleton the store backends share: argument checks, dimension resolution, checked insert, the writer
lock, threaded client."""

from __future__ import annotations

import asyncio
import contextvars
import os
import re
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager, nullcontext
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from mini._checks import at_least
from mini._portal import PerLoop
from mini.errors import (
    DimensionMismatchError,
    DuplicateIdError,
    InvalidInputError,
    StoreError,
    UnsupportedOperationError,
)
from mini.stores.base import Record
from mini.stores.filters import Filter, utf8_size
from mini.types import RetrievalResult

T = TypeVar("T")
C = TypeVar("C")
Prepared = TypeVar("Prepared")
Where = TypeVar("Where")

# Converting a batch for an engine (validation, vectors into arrays, JSON) holds the GIL. A batch whose
# estimated conversion time is above this runs in a worker thread: below it the thread hop costs more than
# the stall it saves, above it other requests on the loop would wait.
OFFLOAD_AFTER_S = 0.005
# Measured per float for LanceDB's Arrow batch (~20 ms per 1M floats); Milvus's rows cost about the same.
SECONDS_PER_FLOAT = 20e-9


def check_dimension(dimension: Any) -> int | None:
    if dimension is not None and not (type(dimension) is int and dimension > 0):
        raise InvalidInputError(f"dimension must be a positive integer, not {dimension!r}")
    return dimension


def check_top_k(top_k: int, maximum: int | None = None, engine: str = "") -> None:
    at_least(1, top_k=top_k)
    if maximum is not None and top_k > maximum:
        raise InvalidInputError(f"top_k must be <= {maximum} on {engine}")


def check_query_text(text: Any) -> str:
    """A keyword query's text: a string of valid Unicode (the facade checks too; backends are also called
    directly)."""
    if not isinstance(text, str):
        raise InvalidInputError(f"the query text must be a string, not {type(text).__name__}")
    utf8_size(text, "the query text")
    return text


def no_keyword_index(engine: str, collection: str, what: str) -> UnsupportedOperationError:
    """The error of `keyword_search` on a collection created before keyword search, which lacks `what`."""
    return UnsupportedOperationError(
        f"{engine} collection {collection!r} has no {what}: it was created before keyword search was "
        "supported. Re-create it to use keyword search: drop the collection and ingest the documents again."
    )


def query_vectors(vectors: Sequence[Sequence[float]], dimension: int | None) -> list[np.ndarray]:
    """The query vectors as float32 arrays, each checked against the collection's dimension and for NaN."""
    queries = []
    for vector in vectors:
        try:
            query = np.asarray(vector, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"a query vector must be a 1-D sequence of numbers: {exc}") from exc
        if query.ndim != 1 or query.shape[0] != dimension:
            raise DimensionMismatchError(dimension or 0, len(vector), "query")
        if not np.isfinite(query).all():
            raise InvalidInputError("query vector contains NaN or infinity")
        queries.append(query)
    return queries


async def convert(
    fn: Callable[[Sequence[Record]], T],
    records: Sequence[Record],
    *,
    per_float: float = SECONDS_PER_FLOAT,
    per_char: float = 0.0,
) -> T:
    """`fn(records)`, in a worker thread when its estimated cost (per float, per character of text) is high."""
    cost = len(records) * len(records[0].vector) * per_float
    if per_char:
        cost += sum(len(r.text) for r in records if isinstance(r.text, str)) * per_char
    return await asyncio.to_thread(fn, records) if cost >= OFFLOAD_AFTER_S else fn(records)


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- the writer lock ----------------------------------------------------------------------------------------

try:
    import fcntl
except ImportError:  # Windows: no flock; writers are still serialised within one process
    fcntl = None  # type: ignore[assignment]

# A waiter polls for the lock this often at first, backing off to _POLL_MAX_S: a thread that polls can give
# up when its caller is cancelled, where one blocked in flock() could not (and would hold up interpreter exit).
_POLL_MIN_S = 0.001
_POLL_MAX_S = 0.02


class _Holding:
    """A writer lock held by one section, and by the writes still running under it: released by the last."""

    def __init__(self, release: Callable[[], None]) -> None:
        self.users = 1
        self.open = True  # the section has not ended: tasks it started may still join it
        self._release = release

    def leave(self) -> None:
        self.users -= 1
        if self.users == 0:
            self._release()


class _Shared:
    """The state of one store's writer lock in this process, shared by every `WriterLock` naming it."""

    def __init__(self) -> None:
        self.thread_lock = threading.Lock()  # one holder per process, whatever its loop or thread
        self.gates: PerLoop[asyncio.Lock] = PerLoop(asyncio.Lock)  # one waiting thread per loop


# Weak: an entry lives while some `WriterLock` names it (a server making a collection per session must not
# keep one per session forever). Guarded, because a weak dictionary's setdefault is not atomic.
_shared_locks: weakref.WeakValueDictionary[tuple[str, str], _Shared] = weakref.WeakValueDictionary()
_registry = threading.Lock()
# The writer-lock sections the current task is in (`WriterLock.hold`), so writes inside one do not wait for
# it. Tasks started inside a section inherit it (the section's own writes run in such tasks) until it ends.
_held: contextvars.ContextVar[Mapping[tuple[str, str], _Holding] | None] = contextvars.ContextVar(
    "mini_store_writer_locks", default=None
)


def _held_now() -> Mapping[tuple[str, str], _Holding]:
    return _held.get() or {}


class WriterLock:
    """One writer at a time for one collection of one store: all writers in this process, and with
    `lock_file` (an embedded store's directory) all processes, through `flock` on that file.

    Why: two writers that both read "no row with this id" and then both commit insert the id twice (LanceDB
    merges do exactly that; measured: two `mini ingest` of 500 files, 35 duplicate ids). Held per commit
    (`acquire`) or per read-then-write section (`hold`), never for a whole ingestion, so concurrent writers
    interleave and each one's commit sees the others' rows.

    Waiting never blocks the event loop: coroutines queue on a per-loop asyncio lock, and the one at its head
    takes the process-wide lock and the file lock in a worker thread (polling, so cancelling a waiter frees
    the thread at once). Re-entrant: a write inside a held section (in its task, or in a task started inside
    it) does not wait for it.
    """

    def __init__(self, where: str, collection: str, *, lock_file: str | None = None) -> None:
        self.key = (where, collection)
        self.lock_file = lock_file if fcntl is not None else None
        with _registry:
            shared = _shared_locks.get(self.key)
            if shared is None:
                shared = _shared_locks[self.key] = _Shared()
        self._shared = shared

    def __repr__(self) -> str:
        return f"WriterLock({self.key[0]!r}, {self.key[1]!r}, lock_file={self.lock_file!r})"

    async def acquire(self) -> Callable[[], None]:
        """Take the lock (or join the section of this task that holds it); returns the release function,
        which may be called from a done callback, once."""
        holding = _held_now().get(self.key)
        if holding is not None and holding.open:
            holding.users += 1
            return _once(holding.leave)
        async with self._shared.gates.get():
            stop = threading.Event()
            future = asyncio.get_running_loop().run_in_executor(None, self._take, stop)
            try:
                fd = await asyncio.shield(future)
            except asyncio.CancelledError:
                stop.set()  # the thread gives up; if it got the lock meanwhile, it is released at once
                future.add_done_callback(self._release_abandoned)
                raise
            except OSError as exc:  # the lock file cannot be made: a read-only or missing store directory
                raise StoreError(
                    f"cannot lock {self.lock_file} for writing ({exc.strerror or exc}): check that the store "
                    "directory exists and is writable"
                ) from exc
        assert fd is not None  # None only once `stop` is set, by a cancelled waiter
        return _once(lambda: self._give_back(fd))

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """Hold the lock for a section (reads and writes that must see no other writer in between). Writes
        started in the section that outlive it (their caller was cancelled) keep the lock until they end."""
        outer = _held_now().get(self.key)
        if outer is not None and outer.open:
            yield
            return
        holding = _Holding(await self.acquire())
        token = _held.set({**_held_now(), self.key: holding})
        try:
            yield
        finally:
            holding.open = False
            _held.reset(token)
            holding.leave()

    def _take(self, stop: threading.Event) -> int | None:
        """In a worker thread: the process-wide lock, then the file lock. The file's descriptor (-1 without
        a lock file), or None if `stop` was set first."""
        delay = _POLL_MIN_S
        while not self._shared.thread_lock.acquire(timeout=_POLL_MAX_S):
            if stop.is_set():
                return None
        if self.lock_file is None:
            return -1
        try:
            os.makedirs(os.path.dirname(self.lock_file), exist_ok=True)
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o666)
        except BaseException:
            self._shared.thread_lock.release()
            raise
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fd
                except BlockingIOError:
                    if stop.is_set():
                        break
                    time.sleep(delay)
                    delay = min(delay * 2, _POLL_MAX_S)
        except BaseException:
            self._give_back(fd)
            raise
        self._give_back(fd)
        return None

    def _give_back(self, fd: int) -> None:
        try:
            if fd >= 0:
                os.close(fd)  # closing the descriptor releases its flock
        finally:
            self._shared.thread_lock.release()

    def _release_abandoned(self, future: asyncio.Future[int | None]) -> None:
        if not future.cancelled() and future.exception() is None:
            fd = future.result()
            if fd is not None:
                self._give_back(fd)


def _once(release: Callable[[], None]) -> Callable[[], None]:
    """`release`, made safe to call more than once (only the first call counts)."""
    done = False

    def call() -> None:
        nonlocal done
        if not done:
            done = True
            release()

    return call


class BackendSkeleton(Generic[Prepared, Where]):
    """What every backend does the same way: name and dimension checks, the dimension of a collection created
    on first write, the checked insert, single searches as batches of one and the checks of `get`.

    A subclass implements `_prepare` (validate and convert a batch, then `_fit` it), `_write_new`,
    `_collection_exists`, `_create_collection`, `_where` (a filter in the engine's terms), `_get`,
    `existing_ids` and `search_many`.
    """

    supports_hybrid: ClassVar[bool] = True
    name_pattern: ClassVar[re.Pattern[str]] = re.compile(r"[A-Za-z0-9_-]+")
    name_rule: ClassVar[str] = "use letters, digits, '_', '-'"

    def __init__(self, collection_name: str, dimension: int | None) -> None:
        if not isinstance(collection_name, str) or not self.name_pattern.fullmatch(collection_name):
            raise InvalidInputError(f"collection name {collection_name!r}: {self.name_rule}")
        self.collection_name = collection_name
        self._configured_dimension = check_dimension(dimension)
        self._dimension = self._configured_dimension
        # Subclasses name their store here (location, collection) so every object on it shares the lock.
        self.writes = WriterLock(f"{type(self).__name__}@{id(self)}", collection_name)

    @property
    def dimension(self) -> int | None:
        """The collection's dimension once it is open, else the configured one."""
        return self._dimension

    async def _collection_exists(self) -> bool:
        """Whether the collection exists (then open, `_dimension` read from it)."""
        raise NotImplementedError

    async def _create_collection(self, dimension: int) -> None:
        """Create the collection (or open the one a concurrent creator made) and read its dimension."""
        raise NotImplementedError

    async def _prepare(self, records: Sequence[Record]) -> Prepared:
        raise NotImplementedError

    async def _write_new(self, prepared: Prepared) -> None:
        raise NotImplementedError

    def _where(self, filter: Filter | None) -> Where:
        """The engine's form of a filter (`None`: no filter); raises for a filter the engine cannot express."""
        raise NotImplementedError

    async def _get(
        self, ids: Sequence[str] | None, where: Where, include_vectors: bool, limit: int | None
    ) -> list[Record]:
        """`get` on an existing collection, `ids` None or not empty."""
        raise NotImplementedError

    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        raise NotImplementedError

    async def search_many(
        self, vectors: Sequence[Sequence[float]], *, top_k: int, filter: Filter | None = None
    ) -> list[list[RetrievalResult]]:
        raise NotImplementedError

    async def _fit(self, got: int) -> None:
        """Open, or create, the collection for vectors of dimension `got`; a mismatch raises before any write."""
        if not await self._collection_exists():
            wanted = self._configured_dimension or got
            if got != wanted:  # refuse before creating a collection of the wrong size
                raise DimensionMismatchError(wanted, got, "row 0")
            await self._create_collection(wanted)
        if got != self._dimension:
            raise DimensionMismatchError(self._dimension or 0, got, "row 0")

    def exclusive(self) -> AbstractAsyncContextManager[None]:
        """Hold the store's writer lock for a section of reads and writes (see `WriterLock`): no other writer
        of this process (of any process, where the backend has a lock file) commits in between."""
        return self.writes.hold()

    async def insert(self, records: Sequence[Record]) -> None:
        if not records:
            return
        prepared = await self._prepare(records)
        # Check then write, as one section: a concurrent insert of the same ids waits, then finds them.
        async with self.exclusive():
            existing = await self.existing_ids([r.id for r in records])
            if existing:
                raise DuplicateIdError(sorted(existing))
            await self._write_new(prepared)

    async def search(
        self, vector: Sequence[float], *, top_k: int, filter: Filter | None = None
    ) -> list[RetrievalResult]:
        return (await self.search_many([vector], top_k=top_k, filter=filter))[0]

    async def get(
        self,
        *,
        ids: Sequence[str] | None = None,
        filter: Filter | None = None,
        include_vectors: bool = False,
        limit: int | None = None,
    ) -> list[Record]:
        where = self._where(filter)  # an unsupported filter fails even on a missing collection
        if (ids is not None and not ids) or not await self._collection_exists():
            return []
        return await self._get(ids, where, include_vectors, limit)


_path_locks: dict[str, threading.Lock] = {}


def path_lock(path: str) -> threading.Lock:
    """The process-wide lock of one local store path (shared by every client object on it)."""
    return _path_locks.setdefault(path, threading.Lock())  # atomic under the GIL


class ThreadedClient(Generic[C]):
    """A sync SDK client used from async code: every call in a worker thread, one at a time under a lock.

    For local engines that are not thread-safe or hold a file lock (Milvus Lite, Qdrant local mode). The
    client is opened on first use, in the worker thread (opening may load data from disk). A per-loop asyncio
    gate lets only one thread per loop wait for the lock, so queued calls wait as coroutines instead of
    filling the default thread pool. The sync client is not tied to a loop, so one serves every loop.
    """

    def __init__(
        self, opener: Callable[[], C], closer: Callable[[C], None], *, lock: threading.Lock | None = None
    ) -> None:
        self._opener = opener
        self._closer = closer
        self._client: C | None = None
        self._lock = lock or threading.Lock()  # guards _client and serialises every call on it
        self._gates: PerLoop[asyncio.Lock] = PerLoop(asyncio.Lock)

    async def call(
        self,
        method: str,
        /,
        *args: Any,
        errors: Callable[[], AbstractContextManager[object]] = nullcontext,
        then: Callable[[Any], Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """`client.method(*args, **kwargs)`; `errors` maps the SDK's failures (opening it included), `then`
        post-processes the result in the same thread (so parsing a big answer never holds the event loop)."""
        async with self._gates.get():
            return await asyncio.to_thread(self._run, method, args, kwargs, errors, then)

    def _run(
        self,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        errors: Callable[[], AbstractContextManager[object]],
        then: Callable[[Any], Any] | None,
    ) -> Any:
        with self._lock:
            with errors():
                if self._client is None:
                    self._client = self._opener()
                result = getattr(self._client, method)(*args, **kwargs)
            return then(result) if then is not None else result

    async def close(self, *, unless: Callable[[], bool] | None = None) -> None:
        """Close the client in a worker thread (the next call reopens it); skipped if `unless()` holds then."""
        async with self._gates.get():
            await asyncio.to_thread(self.close_now, unless=unless)

    def close_now(self, *, unless: Callable[[], bool] | None = None, timeout: float = -1) -> None:
        """Close the client from this thread (at interpreter exit: with a `timeout` on the lock)."""
        if not self._lock.acquire(timeout=timeout):
            return
        try:
            if unless is not None and unless():
                return
            client, self._client = self._client, None
            if client is not None:
                self._closer(client)
        finally:
            self._lock.release()

    def forget_loop(self) -> None:
        """Drop the running loop's gate (a closed backend should not keep per-loop state)."""
        self._gates.pop_current()
