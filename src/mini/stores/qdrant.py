"""The Qdrant backend: a Qdrant server through `AsyncQdrantClient`, or Qdrant's local mode (a directory or
``:memory:``) through the sync `QdrantClient` in worker threads.

URIs: ``qdrant://host:6333`` (http), ``qdrants://host:6333`` (https), ``qdrant+path:///abs/dir`` (local, on
disk), ``:memory:`` (local, in memory). `token` is the API key of a server; it never appears in `repr()`,
logs or error messages.

Why two clients: local mode is pure Python, and its async client never yields (64 searches blocked the loop
for 6.9 s, DESIGN.md section 7), so local mode runs the sync client in worker threads, one call at a time
(it is not thread-safe). Everything above the `_Connection` adapter is one code path: both clients have the
same method names and arguments, only "await the coroutine" vs "call it in a thread" differs.

Layout: one collection per `collection_name`, one unnamed COSINE vector per point (score = cosine
similarity), payload ``{"id", "text", "metadata"}`` (see `qdrant_filters`). Qdrant normalises vectors on
write for COSINE, so `get(include_vectors=True)` returns unit-length vectors (same direction, same scores).
On a server, keyword payload indexes are made for ``metadata.source`` and ``id`` when the collection is
created (local mode has no payload indexes and warns if asked, so it is not asked).

Keyword search: a named sparse vector ``"bm25"`` with Qdrant's IDF modifier holds each text's BM25 term
weights, computed here (`mini.stores.sparse`: our tokenizer, stop words and stemmer, not the engine's);
Qdrant multiplies the query terms by their IDF over the collection at search time. Collections created
before keyword search lack the sparse vector: dense search works, `keyword_search` raises
`UnsupportedOperationError` until the collection is re-created.

Local mode on disk commits every point separately (qdrant-client's sqlite storage): ~1 ms per row, 2,000
rows in ~2.8 s here, all of it in a worker thread. It is meant for tests and small collections; qdrant-client
itself warns above 20,000 points.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import re
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from mini._batching import Coalescer
from mini._portal import PerLoop
from mini.errors import (
    DimensionMismatchError,
    DuplicateIdError,
    InvalidInputError,
    MiniError,
    StoreError,
    UnsupportedOperationError,
)
from mini.stores._rows import json_default, vector_matrix
from mini.stores.base import Record
from mini.stores.filters import Filter
from mini.stores.qdrant_filters import (
    ID_KEY,
    METADATA_KEY,
    TEXT_KEY,
    has_ids,
    payload_key,
    point_id,
    to_qdrant,
)
from mini.stores.sparse import document_vector, query_vector
from mini.types import RetrievalResult

if TYPE_CHECKING:
    from qdrant_client import AsyncQdrantClient, QdrantClient, models

logger = logging.getLogger("mini.stores")

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_DEFAULT_PORT = 6333
# Points per upsert request: bounds request size (and the client's JSON/protobuf encoding on the event loop,
# a few ms at 256 x 384 floats) and, in local mode, how long one write holds the client's lock.
_WRITE_BATCH = 256
# Ids per retrieve / HasId request.
_ID_BATCH = 1_000
# Rows per scroll page (fewer with vectors: each page is converted in one go).
_PAGE = 1_024
_PAGE_WITH_VECTORS = 256
# Validating and converting a batch costs ~0.1 s per 1M floats (2,000 x 384: 80 ms), and its keyword terms
# ~0.35 s per 1M characters of text (0.06 s once the stemmer's cache is warm); above either size it runs in a
# worker thread.
_THREAD_MIN_FLOATS = 100_000
_THREAD_MIN_CHARS = 32_000
# The named sparse vector of keyword search ("" is the unnamed dense vector's name in a dict of vectors).
_SPARSE = "bm25"
_DENSE = ""
# Payload indexes made on a server when the collection is created (local mode has no payload indexes).
_KEYWORD_INDEXES = (payload_key("source"), ID_KEY)


# ---------------------------------------------------------------------------------------------- connections


class _Connection(Protocol):
    """Calls a `QdrantClient` / `AsyncQdrantClient` method by name; both share names and arguments."""

    local: bool

    async def call(self, method: str, /, **kwargs: Any) -> Any: ...

    async def release(self) -> None: ...


class _LocalClient:
    """One sync local-mode client for a location, shared by every backend object on it in this process.

    Local mode holds an exclusive file lock on its directory (a second client on the same path fails, even in
    the same process) and is not thread-safe, so: one client per path (see `_local_client`), every call in a
    worker thread under `_lock`. A per-loop asyncio gate lets only one thread per loop wait for the lock, so
    queued calls wait as coroutines instead of filling the default thread pool. The client is opened on first
    use (opening loads every point from disk: it happens in the worker thread too) and closed when the last
    backend object using it is closed; the next call reopens it.
    """

    local = True

    def __init__(self, location: str, *, shared: bool) -> None:
        self.location = location
        self.shared = shared
        self._client: QdrantClient | None = None
        self._lock = threading.Lock()  # guards _client and serialises every call on it
        self._gates: PerLoop[asyncio.Lock] = PerLoop(asyncio.Lock)
        self._users = 0  # backend objects holding this client; changed under _users_lock
        self._users_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"_LocalClient({self.location!r})"

    def acquire(self) -> None:
        with self._users_lock:
            self._users += 1

    async def release(self) -> None:
        with self._users_lock:
            self._users -= 1
            idle = self._users <= 0
        # An in-memory store lives as long as its backend object: closing it would lose the data.
        if idle and self.shared:
            await asyncio.to_thread(self._close_if_idle)

    def _close_if_idle(self) -> None:
        with self._lock:
            if self._users > 0:  # reacquired while we waited for the lock
                return
            client, self._client = self._client, None
            if client is not None:
                client.close()

    def close_now(self, timeout: float) -> None:
        """For interpreter exit: release the file lock while modules still exist."""
        if self._lock.acquire(timeout=timeout):
            try:
                client, self._client = self._client, None
                if client is not None:
                    client.close()
            finally:
                self._lock.release()

    def _run(self, method: str, kwargs: dict[str, Any]) -> Any:
        with self._lock:
            client = self._client
            if client is None:
                from qdrant_client import QdrantClient

                # Safe because every call is serialised by _lock: sqlite objects are then used by one
                # thread at a time (needed where sqlite's default would refuse a second thread, e.g. macOS).
                if self.location == ":memory:":
                    client = QdrantClient(location=":memory:", force_disable_check_same_thread=True)
                else:
                    client = QdrantClient(path=self.location, force_disable_check_same_thread=True)
                self._client = client
            return getattr(client, method)(**kwargs)

    async def call(self, method: str, /, **kwargs: Any) -> Any:
        async with self._gates.get():
            return await asyncio.to_thread(self._run, method, kwargs)


_local_clients: dict[str, _LocalClient] = {}
_local_clients_lock = threading.Lock()


def _local_client(path: str) -> _LocalClient:
    """The process-wide client for a directory (entries stay; their client closes when unused)."""
    with _local_clients_lock:
        client = _local_clients.get(path)
        if client is None:
            client = _local_clients[path] = _LocalClient(path, shared=True)
        return client


@atexit.register
def _close_local_clients() -> None:
    # QdrantClient.__del__ would otherwise close them during interpreter teardown, where its lazy
    # `import portalocker` fails and prints "Exception ignored in ...".
    with _local_clients_lock:
        clients = list(_local_clients.values())
    for client in clients:
        try:
            client.close_now(timeout=2.0)
        except Exception:  # exiting anyway; the OS releases the file lock
            logger.debug("closing Qdrant local client %s failed", client.location, exc_info=True)


class _RemoteClient:
    """`AsyncQdrantClient` per event loop (its HTTP pool / gRPC channel belong to the loop that made them)."""

    local = False

    def __init__(
        self, url: str, *, api_key: str | None, timeout: float, prefer_grpc: bool, grpc_port: int
    ) -> None:
        self.url = url
        self._api_key = api_key
        self._timeout = timeout
        self._prefer_grpc = prefer_grpc
        self._grpc_port = grpc_port
        self._clients: PerLoop[AsyncQdrantClient] = PerLoop(self._make, aclose=lambda client: client.close())

    def __repr__(self) -> str:
        return f"_RemoteClient({self.url!r})"

    def _make(self) -> AsyncQdrantClient:
        from qdrant_client import AsyncQdrantClient

        # The API key goes in as the `api-key` header (what `api_key=` sets for REST and gRPC alike): passing
        # `api_key=` over plain http makes qdrant-client emit a UserWarning on every construction, which is
        # global-state noise in tests and apps; `_warn_plain_http` logs it once, without the key, instead.
        # check_compatibility=False: it would start a thread making a blocking request to read the version.
        return AsyncQdrantClient(
            url=self.url,
            headers={"api-key": self._api_key} if self._api_key else None,
            timeout=max(1, round(self._timeout)),
            prefer_grpc=self._prefer_grpc,
            grpc_port=self._grpc_port,
            check_compatibility=False,
        )

    async def call(self, method: str, /, **kwargs: Any) -> Any:
        return await getattr(self._clients.get(), method)(**kwargs)

    async def release(self) -> None:
        await self._clients.aclose_current()


# ----------------------------------------------------------------------------------------------- errors


class _CollectionMissing(StoreError):
    """The collection does not exist (reads answer empty; never escapes a public method unless unexpected)."""


def _driver_errors() -> tuple[type[BaseException], ...]:
    """What the clients raise for failures of the store (not for bugs of ours)."""
    import httpx
    from qdrant_client.http.exceptions import ApiException

    errors: list[type[BaseException]] = [ApiException, httpx.HTTPError, ValueError, RuntimeError, OSError]
    errors.append(sqlite3.Error)  # local mode's storage
    try:
        import grpc

        errors.append(grpc.RpcError)
    except ImportError:  # pragma: no cover - grpcio is a dependency of qdrant-client
        pass
    return tuple(errors)


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)  # UnexpectedResponse (REST)
    if isinstance(status, int):
        return status
    code = getattr(exc, "code", None)  # grpc.aio.AioRpcError
    if callable(code):
        try:
            name = getattr(code(), "name", "")
        except Exception:
            return None
        return {"NOT_FOUND": 404, "ALREADY_EXISTS": 409, "INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401}.get(
            name
        )
    return None


def _is_missing(exc: BaseException) -> bool:
    """A read or write of a collection that does not exist (local mode: ValueError "... not found")."""
    if _status(exc) == 404:
        return True
    return isinstance(exc, ValueError) and str(exc).startswith("Collection ") and "not found" in str(exc)


def _is_conflict(exc: BaseException) -> bool:
    """create_collection lost a race: the collection exists now."""
    return _status(exc) == 409 or "already exists" in str(exc)


# --------------------------------------------------------------------------------------------- conversion


def _parse_uri(uri: str) -> tuple[str, str, str]:
    """(kind, location, display) for a URI; kind is "memory", "path" or "server". No I/O."""
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidInputError("the Qdrant URI must be a non-empty string")
    if uri.strip() == ":memory:":
        return "memory", ":memory:", ":memory:"
    scheme, sep, rest = uri.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("qdrant", "qdrants", "qdrant+path"):
        raise InvalidInputError(
            f"not a Qdrant URI: {uri!r}; use qdrant://host:port, qdrants://host:port, qdrant+path:///dir "
            "or :memory:"
        )
    if scheme == "qdrant+path":
        if not rest:
            raise InvalidInputError("qdrant+path:// needs a directory, e.g. qdrant+path:///data/qdrant")
        # Resolved now (no I/O) so a later chdir cannot move the store.
        path = os.path.abspath(os.path.expanduser(rest))
        return "path", path, f"qdrant+path://{path}"
    parts = urllib.parse.urlsplit(f"//{rest}")
    if "@" in parts.netloc:
        # A key inside the URI would show up in repr() and messages: it belongs in `token`.
        raise InvalidInputError("put the Qdrant API key in token=..., not in the URI")
    if parts.query or parts.fragment:
        raise InvalidInputError(f"unexpected query or fragment in Qdrant URI {uri!r}")
    try:
        host, port = parts.hostname, parts.port or _DEFAULT_PORT
    except ValueError as exc:
        raise InvalidInputError(f"invalid port in Qdrant URI {uri!r}") from exc
    if not host:
        raise InvalidInputError(f"the Qdrant URI {uri!r} names no host")
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    path = parts.path.rstrip("/")
    http = "https" if scheme == "qdrants" else "http"
    return "server", f"{http}://{netloc}{path}", f"{scheme}://{netloc}{path}"


_dump = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=json_default).encode


def _points(records: Sequence[Record]) -> list[models.PointStruct]:
    """Validated points for a batch, with the dense vector and the keyword terms of the text (CPU only: big
    batches call this in a thread). A text without terms gets no sparse vector."""
    from qdrant_client import models

    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise InvalidInputError("ids within one write must be unique")
    matrix = vector_matrix(records)
    points = []
    for record, vector in zip(records, matrix.tolist(), strict=True):
        if not isinstance(record.id, str) or not record.id:
            raise InvalidInputError(f"id {record.id!r} must be a non-empty string")
        try:
            # Through JSON and back: numpy scalars become numbers, tuples lists, and anything that cannot be
            # stored is refused here, with our error, instead of failing inside the client.
            metadata = json.loads(_dump(dict(record.metadata)))
            text = str(record.text)
            text.encode("utf-8")
            record.id.encode("utf-8")
        except (TypeError, ValueError) as exc:  # UnicodeEncodeError (lone surrogates) is a ValueError
            raise InvalidInputError(f"record {record.id!r} cannot be stored in Qdrant: {exc}") from exc
        vectors: dict[str, Any] = {_DENSE: vector}
        terms = document_vector(text)
        if terms:
            vectors[_SPARSE] = models.SparseVector(indices=list(terms.indices), values=list(terms.values))
        points.append(
            models.PointStruct(
                id=point_id(record.id),
                vector=vectors,
                payload={ID_KEY: record.id, TEXT_KEY: text, METADATA_KEY: metadata},
            )
        )
    return points


def _unpack(point: Any) -> tuple[str, str, dict[str, Any]]:
    """(id, text, metadata) of a returned point; points written by others get their payload as metadata."""
    payload = point.payload or {}
    if isinstance(payload.get(ID_KEY), str) and isinstance(payload.get(METADATA_KEY), dict):
        return payload[ID_KEY], str(payload.get(TEXT_KEY) or ""), payload[METADATA_KEY]
    return str(point.id), "", dict(payload)


def _dense_only(points: Sequence[models.PointStruct]) -> list[models.PointStruct]:
    """The points without their keyword terms, for a collection made before keyword search (no sparse vector)."""
    return [
        p.model_copy(update={"vector": p.vector[_DENSE]}) if isinstance(p.vector, dict) else p for p in points
    ]


def _records(points: Sequence[Any], include_vectors: bool) -> list[Record]:
    records = []
    for point in points:
        id_, text, metadata = _unpack(point)
        vector = None
        if include_vectors:
            # A dict of vectors when the collection also has the sparse one, a plain list otherwise.
            dense = point.vector.get(_DENSE) if isinstance(point.vector, dict) else point.vector
            vector = np.asarray(dense, dtype=np.float32)
        records.append(Record(id=id_, vector=vector, text=text, metadata=metadata))
    return records


# One query of a batch: (dense vector or sparse vector, top_k, filter, vector name: None for the dense one).
_Query = tuple[Any, int, Any, str | None]


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ------------------------------------------------------------------------------------------------ backend


class QdrantBackend:
    """Vectors, text and JSON metadata in one Qdrant collection; cosine similarity scores.

    Construction does no I/O. The collection is created on the first write (with the vectors' dimension, or
    the configured one); reads of a missing collection answer empty and create nothing. One backend object
    works from any event loop: local mode shares one client per directory across loops and objects, server
    mode keeps one `AsyncQdrantClient` per loop.

    Not atomic (Qdrant has no multi-operation transactions): `insert` checks for existing ids, then writes;
    `delete` counts, then deletes; `replace` upserts the new rows, then deletes the rest of the scope, so a
    concurrent reader may briefly see old and new rows of the scope together (never neither).
    """

    supports_hybrid: ClassVar[bool] = True
    supports_filters: ClassVar[bool] = True

    def __init__(
        self,
        uri: str = ":memory:",
        *,
        collection_name: str = "docs",
        dimension: int | None = None,
        token: str | None = None,
        timeout: float = 10.0,
        prefer_grpc: bool = False,
        grpc_port: int = 6334,
        max_concurrent_searches: int | None = None,
    ) -> None:
        if not isinstance(collection_name, str) or not _NAME.fullmatch(collection_name):
            raise InvalidInputError(f"collection name {collection_name!r}: use letters, digits, '_', '-'")
        if dimension is not None and not (type(dimension) is int and dimension > 0):
            raise InvalidInputError(f"dimension must be a positive integer, not {dimension!r}")
        if not timeout > 0:
            raise InvalidInputError(f"timeout must be positive, not {timeout!r}")
        kind, location, self.uri = _parse_uri(uri)
        self.kind = kind
        self.collection_name = collection_name
        self._configured_dimension = dimension
        self._dimension = dimension
        self._opened = False  # the collection is known to exist and self._dimension is its dimension
        self._keyword = False  # the open collection has the "bm25" sparse vector with the IDF modifier
        self._secret = token or None  # only ever used to redact messages and build the client
        self._conn: _Connection
        if kind == "server":
            self._conn = _RemoteClient(
                location, api_key=token or None, timeout=timeout, prefer_grpc=prefer_grpc, grpc_port=grpc_port
            )
            host = urllib.parse.urlsplit(location).hostname or ""
            if token and location.startswith("http://") and host not in ("localhost", "127.0.0.1", "::1"):
                logger.warning("the Qdrant API key for %s is sent over plain http; use qdrants://", self.uri)
        elif kind == "path":
            self._conn = _local_client(location)
        else:
            self._conn = _LocalClient(location, shared=False)
        self._acquired = False  # whether this object counts as a user of a shared local client
        self._acquire_lock = threading.Lock()
        self._open_locks: PerLoop[asyncio.Lock] = PerLoop(asyncio.Lock)
        # Concurrent searches with the same filter are sent as one query_batch_points call: in local mode
        # one thread hop and one lock acquisition for many, on a server one request. Local mode runs one
        # call at a time anyway; a server gets a few batches in flight.
        limit = 1 if self._conn.local else (max_concurrent_searches or 4)
        self._searches: Coalescer[Any, _Query, list[RetrievalResult]] = Coalescer(
            self._search_batch, max_batch=256, max_concurrent=limit
        )

    def __repr__(self) -> str:
        return f"QdrantBackend({self.uri!r}, collection_name={self.collection_name!r})"

    @property
    def dimension(self) -> int | None:
        """The collection's dimension once it has been opened, else the configured one."""
        return self._dimension

    # --- plumbing

    def _connection(self) -> _Connection:
        if isinstance(self._conn, _LocalClient) and not self._acquired:
            with self._acquire_lock:
                if not self._acquired:
                    self._conn.acquire()
                    self._acquired = True
        return self._conn

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Translate client failures into `StoreError` (ours pass through); the API key is redacted."""
        try:
            yield
        except MiniError:
            raise
        except _driver_errors() as exc:
            if _is_missing(exc):
                self._forget()  # dropped (maybe elsewhere): reads answer empty, the next write recreates it
                raise _CollectionMissing(
                    f"Qdrant collection {self.collection_name!r} does not exist"
                ) from exc
            message = " ".join(str(exc).split()) or type(exc).__name__
            if self._secret:
                message = message.replace(self._secret, "***")
            raise StoreError(f"Qdrant {action} failed: {message} ({self.uri})") from exc

    async def _call(self, action: str, method: str, /, **kwargs: Any) -> Any:
        conn = self._connection()
        with self._errors(action):
            return await conn.call(method, **kwargs)

    def _forget(self) -> None:
        """The collection vanished (dropped elsewhere): the next call looks again."""
        self._opened = False
        self._keyword = False
        self._dimension = self._configured_dimension

    async def _open(self) -> bool:
        """Whether the collection exists; reads its dimension the first time."""
        if self._opened:
            return True
        async with self._open_locks.get():
            if self._opened:
                return True
            try:
                info = await self._call(
                    "open collection", "get_collection", collection_name=self.collection_name
                )
            except _CollectionMissing:
                return False
            self._dimension = self._check_config(info)
            sparse = info.config.params.sparse_vectors or {}
            self._keyword = _SPARSE in sparse and str(sparse[_SPARSE].modifier) == "idf"
            self._opened = True
            return True

    def _check_config(self, info: Any) -> int:
        from qdrant_client import models

        vectors = info.config.params.vectors
        if not isinstance(vectors, models.VectorParams):
            raise StoreError(
                f"Qdrant collection {self.collection_name!r} has named or no dense vectors; "
                "this backend needs one unnamed vector per point"
            )
        if vectors.distance != models.Distance.COSINE:
            raise StoreError(
                f"Qdrant collection {self.collection_name!r} uses {vectors.distance} distance, not Cosine"
            )
        return int(vectors.size)

    async def _ensure(self, got: int) -> None:
        """Open or create the collection for vectors of dimension `got`; a mismatch raises before any write."""
        if not await self._open():
            wanted = self._configured_dimension or got
            if got != wanted:  # refuse before creating a collection of the wrong size
                raise DimensionMismatchError(wanted, got, "row 0")
            await self._create(wanted)
        if got != self._dimension:
            raise DimensionMismatchError(self._dimension or 0, got, "row 0")

    async def _create(self, dimension: int) -> None:
        from qdrant_client import models

        async with self._open_locks.get():
            if self._opened:
                return
            try:
                await self._call(
                    "create collection",
                    "create_collection",
                    collection_name=self.collection_name,
                    vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
                    sparse_vectors_config={
                        _SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF),
                    },
                )
            except StoreError as exc:
                # Another backend object or process created it first: use theirs (its dimension wins).
                if exc.__cause__ is None or not _is_conflict(exc.__cause__):
                    raise
            else:
                logger.info(
                    "created Qdrant collection %r (dimension %d) at %s",
                    self.collection_name,
                    dimension,
                    self.uri,
                )
                if not self._conn.local:  # local mode has no payload indexes (and warns if asked)
                    for field in _KEYWORD_INDEXES:
                        await self._call(
                            "create payload index",
                            "create_payload_index",
                            collection_name=self.collection_name,
                            field_name=field,
                            field_schema=models.PayloadSchemaType.KEYWORD,
                        )
        await self._open()

    async def _prepare(self, records: Sequence[Record]) -> list[models.PointStruct]:
        chars = sum(len(r.text) for r in records if isinstance(r.text, str))
        big = len(records) * len(records[0].vector) >= _THREAD_MIN_FLOATS or chars >= _THREAD_MIN_CHARS
        return await asyncio.to_thread(_points, records) if big else _points(records)

    async def _write(self, action: str, points: Sequence[models.PointStruct], dimension: int) -> None:
        """Upsert points in batches, creating the collection (again, if it was dropped meanwhile)."""
        for attempt in range(2):
            await self._ensure(dimension)
            try:
                for batch in _chunks(points, _WRITE_BATCH):
                    await self._call(
                        action,
                        "upsert",
                        collection_name=self.collection_name,
                        points=list(batch) if self._keyword else _dense_only(batch),
                    )
                return
            except _CollectionMissing:  # dropped meanwhile (by another object or process): create it again
                if attempt:
                    raise

    async def _count(self, flt: models.Filter | None) -> int:
        result = await self._call(
            "count", "count", collection_name=self.collection_name, count_filter=flt, exact=True
        )
        return int(result.count)

    async def _delete_matching(self, flt: models.Filter) -> int:
        """Count, then delete, the points matching a filter (not atomic: see the class docstring)."""
        from qdrant_client import models

        try:
            matching = await self._count(flt)
            if matching:
                await self._call(
                    "delete",
                    "delete",
                    collection_name=self.collection_name,
                    points_selector=models.FilterSelector(filter=flt),
                )
        except _CollectionMissing:
            return 0
        return matching

    # --- writes

    async def insert(self, records: Sequence[Record]) -> None:
        if not records:
            return
        points = await self._prepare(records)
        dimension = len(records[0].vector)  # _prepare checked that every row has it
        await self._ensure(dimension)
        # Check then write: not atomic against a concurrent writer inserting the same ids (upsert is).
        existing = await self.existing_ids([r.id for r in records])
        if existing:
            raise DuplicateIdError(sorted(existing))
        await self._write("insert", points, dimension)

    async def upsert(self, records: Sequence[Record]) -> None:
        if not records:
            return
        await self._write("upsert", await self._prepare(records), len(records[0].vector))

    async def delete(self, *, ids: Sequence[str] | None = None, filter: Filter | None = None) -> int:
        from qdrant_client import models

        conditions: list[Any] = [to_qdrant(filter)] if filter is not None else []
        if ids:
            conditions.append(has_ids(ids))
        if not conditions or not await self._open():
            return 0
        # Rows matching either, each counted once: one filter, one count, one delete.
        flt = conditions[0] if len(conditions) == 1 else models.Filter(should=conditions)
        if not isinstance(flt, models.Filter):
            flt = models.Filter(must=[flt])
        return await self._delete_matching(flt)

    async def replace(self, records: Sequence[Record], *, scope: Filter) -> int:
        """Upsert `records`, then delete the rows matching `scope` that are not among them.

        Two operations, not one commit: between them a reader may see the old and the new rows of the scope
        together (it never sees the scope empty). Returns the rows deleted.
        """
        from qdrant_client import models

        in_scope = to_qdrant(scope)  # an unsupported scope fails before anything is written
        if not records:
            return await self.delete(filter=scope)
        await self.upsert(records)
        stale = models.Filter(must=[in_scope], must_not=[has_ids(r.id for r in records)])
        return await self._delete_matching(stale)

    async def drop(self) -> None:
        with suppress(_CollectionMissing):  # dropping a missing collection is fine
            await self._call("drop collection", "delete_collection", collection_name=self.collection_name)
        self._forget()

    # --- reads

    async def search(
        self, vector: Sequence[float], *, top_k: int, filter: Filter | None = None
    ) -> list[RetrievalResult]:
        return (await self.search_many([vector], top_k=top_k, filter=filter))[0]

    async def search_many(
        self, vectors: Sequence[Sequence[float]], *, top_k: int, filter: Filter | None = None
    ) -> list[list[RetrievalResult]]:
        """One ranking per query vector, best first. Concurrent calls with the same filter are coalesced into
        one `query_batch_points` call (each query keeps its own `top_k`)."""
        if top_k < 1:
            raise InvalidInputError("top_k must be >= 1")
        if len(vectors) == 0:
            return []
        flt = to_qdrant(filter) if filter is not None else None
        if not await self._open():
            return [[] for _ in vectors]
        queries = []
        for vector in vectors:
            try:
                query = np.asarray(vector, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise InvalidInputError(f"a query vector must be a 1-D sequence of numbers: {exc}") from exc
            if query.ndim != 1 or query.shape[0] != self._dimension:
                raise DimensionMismatchError(self._dimension or 0, len(vector), "query")
            if not np.isfinite(query).all():
                raise InvalidInputError("query vector contains NaN or infinity")
            queries.append((query.tolist(), top_k, flt, None))
        # Keyed by the parsed filter so that a query the server rejects only fails its own batch.
        return await self._searches.submit_many(filter, queries)

    async def keyword_search(
        self, text: str, *, top_k: int, filter: Filter | None = None
    ) -> list[RetrievalResult]:
        """Rows ranked by BM25 of their text to `text`, best first: the query's terms (weight 1 each, see
        `mini.stores.sparse`) against the "bm25" sparse vectors, IDF applied by Qdrant. Rows sharing no term
        with the query are not returned; a query of stop words only matches nothing."""
        from qdrant_client import models

        if top_k < 1:
            raise InvalidInputError("top_k must be >= 1")
        if not isinstance(text, str):
            raise InvalidInputError(f"the query text must be a string, not {type(text).__name__}")
        flt = to_qdrant(filter) if filter is not None else None
        if not await self._open():
            return []
        if not self._keyword:
            raise UnsupportedOperationError(
                f"Qdrant collection {self.collection_name!r} has no keyword (BM25) sparse vector: it was "
                "created before keyword search was supported. Re-create it to use keyword search: drop the "
                "collection and ingest the documents again."
            )
        terms = query_vector(text)
        if not terms:
            return []
        query = models.SparseVector(indices=list(terms.indices), values=list(terms.values))
        # Batched apart from dense searches: keyed by (vector name, filter).
        return (await self._searches.submit_many((_SPARSE, filter), [(query, top_k, flt, _SPARSE)]))[0]

    async def _search_batch(self, key: Any, items: list[_Query]) -> list[list[RetrievalResult]]:
        from qdrant_client import models

        requests = [
            models.QueryRequest(
                query=query, using=using, filter=flt, limit=top_k, with_payload=True, with_vector=False
            )
            for query, top_k, flt, using in items
        ]
        try:
            responses = await self._call(
                "search", "query_batch_points", collection_name=self.collection_name, requests=requests
            )
        except _CollectionMissing:
            return [[] for _ in items]
        rankings = []
        for response in responses:
            ranking = []
            for point in response.points:
                id_, text, metadata = _unpack(point)
                ranking.append(
                    RetrievalResult(id=id_, text=text, score=float(point.score), metadata=metadata)
                )
            rankings.append(ranking)
        return rankings

    async def count(self, filter: Filter | None = None) -> int:
        flt = to_qdrant(filter) if filter is not None else None
        if not await self._open():
            return 0
        try:
            return await self._count(flt)
        except _CollectionMissing:
            return 0

    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        if not ids or not await self._open():
            return set()
        by_point = {point_id(i): i for i in ids}
        found: set[str] = set()
        try:
            for batch in _chunks(list(by_point), _ID_BATCH):
                points = await self._call(
                    "id lookup",
                    "retrieve",
                    collection_name=self.collection_name,
                    ids=list(batch),
                    with_payload=False,
                    with_vectors=False,
                )
                found.update(by_point[str(p.id)] for p in points if str(p.id) in by_point)
        except _CollectionMissing:
            return set()
        return found

    async def get(
        self,
        *,
        ids: Sequence[str] | None = None,
        filter: Filter | None = None,
        include_vectors: bool = False,
        limit: int | None = None,
    ) -> list[Record]:
        """Rows by ids and/or filter via paginated scroll; vectors (unit length, float32) only if asked."""
        from qdrant_client import models

        flt = to_qdrant(filter) if filter is not None else None
        if (ids is not None and not ids) or not await self._open():
            return []
        # Id lists are split into batches of bounded size (one scroll each), the filter ANDed to each.
        id_batches: list[Sequence[str] | None] = (
            list(_chunks(list(ids), _ID_BATCH)) if ids is not None else [None]
        )
        page = _PAGE_WITH_VECTORS if include_vectors else _PAGE
        records: list[Record] = []
        try:
            for batch in id_batches:
                must: list[Any] = [has_ids(batch)] if batch is not None else []
                must += [flt] if flt is not None else []
                scroll_filter = models.Filter(must=must) if must else None
                offset = None
                while limit is None or len(records) < limit:
                    size = page if limit is None else min(page, limit - len(records))
                    points, offset = await self._call(
                        "get",
                        "scroll",
                        collection_name=self.collection_name,
                        scroll_filter=scroll_filter,
                        limit=size,
                        offset=offset,
                        with_payload=True,
                        with_vectors=include_vectors,
                    )
                    if include_vectors and points:
                        records += await asyncio.to_thread(_records, points, True)
                    else:
                        records += _records(points, False)
                    if offset is None:
                        break
                if limit is not None and len(records) >= limit:
                    break
        except _CollectionMissing:
            return []
        return records[:limit] if limit is not None else records

    async def aclose(self) -> None:
        """Release this object's clients; the next call reopens. A local directory's client closes (and its
        file lock goes) when the last backend object using it is closed."""
        self._opened = False
        if isinstance(self._conn, _LocalClient):
            with self._acquire_lock:
                acquired, self._acquired = self._acquired, False
            if acquired:
                await self._conn.release()
        else:
            await self._conn.release()
        self._open_locks.pop_current()
