"""The skeleton the store backends share: argument checks, dimension resolution, checked insert, threaded client."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from mini._checks import at_least
from mini._portal import PerLoop
from mini.errors import DimensionMismatchError, DuplicateIdError, InvalidInputError, UnsupportedOperationError
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

    async def insert(self, records: Sequence[Record]) -> None:
        if not records:
            return
        prepared = await self._prepare(records)
        # Check then write: not atomic against a concurrent writer inserting the same ids (upsert is).
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
