"""The Qdrant backend: a Qdrant server through `AsyncQdrantClient`, or Qdrant's local mode (a directory or
``:memory:``) through the sync `QdrantClient` in worker threads.

URIs: ``qdrant://host:6333`` (http), ``qdrants://host:6333`` (https), ``qdrant+path:///abs/dir`` (local, on
disk), ``:memory:`` (local, in memory). `token` is the API key of a server; it never appears in `repr()`,
logs or error messages.

Why two clients: see `mini.stores.qdrant.clients`.

Layout: one collection per `collection_name`, one unnamed COSINE vector per point (score = cosine
similarity), payload ``{"id", "text", "metadata"}`` (see `mini.stores.qdrant.filters`). Qdrant normalises vectors on
write for COSINE, so `get(include_vectors=True)` returns unit-length vectors (same direction, same scores).
On a server, keyword payload indexes are made for ``metadata.source`` and ``id`` when the collection is
created (local mode has no payload indexes and warns if asked, so it is not asked).

Keyword search: a named sparse vector with Qdrant's IDF modifier holds each text's BM25 term weights; Qdrant
applies the IDF over the collection at search time. Who makes the terms is chosen when the collection is
created and recorded in the sparse vector's name, so reopening keeps it (`keyword_mode`): ``"bm25-server"``,
a server 1.15.3+ analysing `Document(model="qdrant/bm25")` itself; ``"bm25"``, our terms
(`mini.stores.sparse`) for older servers and local mode (why: docs/scaling.md, "Keyword search / hybrid").
Collections created before keyword search have no sparse vector: dense search works, `keyword_search`
raises `UnsupportedOperationError` until the collection is re-created.

Local mode on disk commits every point separately (qdrant-client's sqlite storage): ~1 ms per row, 2,000
rows in ~2.8 s here, all of it in a worker thread. It is meant for tests and small collections; qdrant-client
itself warns above 20,000 points.

Size (~530 lines, over the project's ~500): what could leave already has (connections and error mapping in
`clients.py`, points and the keyword mode's wire forms in `points.py`, filters in `filters.py`); what is left is
one class implementing the store protocol, whose methods share its open/collection state. Splitting it would
spread that state over modules; the next natural cut is the paged reads (`_get`) if it grows.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from mini._batching import Coalescer
from mini._portal import PerLoop
from mini.errors import InvalidInputError, MiniError, StoreError
from mini.stores._common import (
    BackendSkeleton,
    WriterLock,
    check_query_text,
    check_top_k,
    chunks,
    convert,
    no_keyword_index,
    query_vectors,
)
from mini.stores.base import Record
from mini.stores.filters import Filter
from mini.stores.qdrant.clients import (
    CollectionMissing,
    Connection,
    LocalClient,
    RemoteClient,
    driver_errors,
    is_conflict,
    is_missing,
    local_client,
    parse_uri,
)
from mini.stores.qdrant.filters import ID_KEY, has_ids, payload_key, point_id, to_qdrant
from mini.stores.qdrant.points import (
    KeywordMode,
    collection_layout,
    for_mode,
    hit,
    keyword_query,
    keyword_vector,
    records_from_points,
    server_has_bm25,
    to_points,
)
from mini.types import RetrievalResult

if TYPE_CHECKING:
    from qdrant_client import models

logger = logging.getLogger("mini.stores")

# Points per upsert request: bounds request size (and the client's JSON/protobuf encoding on the event loop,
# a few ms at 256 x 384 floats) and, in local mode, how long one write holds the client's lock.
_WRITE_BATCH = 256
# Ids per retrieve / HasId request.
_ID_BATCH = 1_000
# Rows per scroll page (fewer with vectors: each page is converted in one go).
_PAGE = 1_024
_PAGE_WITH_VECTORS = 256
# Payload indexes made on a server when the collection is created (local mode has no payload indexes).
_KEYWORD_INDEXES = (payload_key("source"), ID_KEY)
# One query of a batch: (dense vector or sparse vector, top_k, filter, vector name: None for the dense one).
_Query = tuple[Any, int, Any, str | None]


class QdrantBackend(BackendSkeleton[tuple[list["models.PointStruct"], int], "models.Filter | None"]):
    """Vectors, text and JSON metadata in one Qdrant collection; cosine similarity scores.

    Construction does no I/O. The collection is created on the first write (with the vectors' dimension, or
    the configured one); reads of a missing collection answer empty and create nothing. One backend object
    works from any event loop: local mode shares one client per directory across loops and objects, server
    mode keeps one `AsyncQdrantClient` per loop.

    Not atomic (Qdrant has no multi-operation transactions): `insert` checks for existing ids, then writes;
    `delete` counts, then deletes; `replace` upserts the new rows, then deletes the rest of the scope, so a
    concurrent reader may briefly see old and new rows of the scope together (never neither).
    """

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
        super().__init__(collection_name, dimension)
        if not timeout > 0:
            raise InvalidInputError(f"timeout must be positive, not {timeout!r}")
        kind, location, self.uri = parse_uri(uri)
        self.kind = kind
        if kind != "memory":  # an in-memory client is this object's alone: so is its lock (the default)
            self.writes = WriterLock(f"qdrant:{location}", collection_name)
        self._opened = False  # the collection is known to exist and self._dimension is its dimension
        self._keyword: KeywordMode | None = None  # the open collection's keyword mode (points.py)
        self._server_bm25: bool | None = None  # the server analyses qdrant/bm25 documents (asked once)
        self._secret = token or None  # only ever used to redact messages and build the client
        self._conn: Connection
        if kind == "server":
            self._conn = RemoteClient(
                location, api_key=token or None, timeout=timeout, prefer_grpc=prefer_grpc, grpc_port=grpc_port
            )
            host = urllib.parse.urlsplit(location).hostname or ""
            if token and location.startswith("http://") and host not in ("localhost", "127.0.0.1", "::1"):
                logger.warning("the Qdrant API key for %s is sent over plain http; use qdrants://", self.uri)
        elif kind == "path":
            self._conn = local_client(location)
        else:
            self._conn = LocalClient(location, shared=False)
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
    def keyword_mode(self) -> KeywordMode | None:
        """How the open collection's keyword terms are made: "server" (Qdrant's own BM25 analysis),
        "client" (`mini.stores.sparse`), or None (no keyword index, or the collection is not open yet)."""
        return self._keyword if self._opened else None

    # --- plumbing

    def _connection(self) -> Connection:
        if isinstance(self._conn, LocalClient) and not self._acquired:
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
        except driver_errors() as exc:
            if is_missing(exc):
                self._forget()  # dropped (maybe elsewhere): reads answer empty, the next write recreates it
                raise CollectionMissing(f"Qdrant collection {self.collection_name!r} does not exist") from exc
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
        self._keyword = None
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
            except CollectionMissing:
                return False
            self._dimension, self._keyword = collection_layout(info, self.collection_name)
            self._opened = True
            return True

    async def _collection_exists(self) -> bool:
        return await self._open()

    async def _new_collection_mode(self) -> KeywordMode:
        """The keyword mode a collection created now gets: "server" where the server analyses BM25 itself."""
        if self._conn.local:
            return "client"
        if self._server_bm25 is None:
            conn = self._connection()
            try:
                info = await conn.call("info")
            except driver_errors() as exc:  # an old server, or one behind a proxy that hides `GET /`
                logger.info(
                    "Qdrant at %s did not tell its version (%s): keyword terms are made here",
                    self.uri,
                    type(exc).__name__,
                )
                self._server_bm25 = False
            else:
                self._server_bm25 = server_has_bm25(getattr(info, "version", None))
        return "server" if self._server_bm25 else "client"

    async def _expected_mode(self) -> KeywordMode | None:
        """The keyword mode points are converted for: the open collection's, or the one a new collection gets
        (`_write` adapts them if another process created the collection meanwhile with another one)."""
        if await self._open():
            return self._keyword
        return await self._new_collection_mode()

    async def _create_collection(self, dimension: int) -> None:
        from qdrant_client import models

        mode = await self._new_collection_mode()
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
                        keyword_vector(mode): models.SparseVectorParams(modifier=models.Modifier.IDF),
                    },
                )
            except StoreError as exc:
                # Another backend object or process created it first: use theirs (its dimension wins).
                if exc.__cause__ is None or not is_conflict(exc.__cause__):
                    raise
            else:
                logger.info(
                    "created Qdrant collection %r (dimension %d, keyword terms made by the %s) at %s",
                    self.collection_name,
                    dimension,
                    mode,
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

    async def _points(self, records: Sequence[Record]) -> list[models.PointStruct]:
        # Validating and converting costs ~0.1 s per 1M floats (2,000 x 384: 80 ms), and the keyword terms
        # ~0.35 s per 1M characters of text (0.06 s once the stemmer's cache is warm).
        mode = await self._expected_mode()
        return await convert(lambda batch: to_points(batch, mode), records, per_float=100e-9, per_char=350e-9)

    async def _prepare(self, records: Sequence[Record]) -> tuple[list[models.PointStruct], int]:
        points = await self._points(records)
        dimension = len(records[0].vector)  # to_points checked that every row has it
        await self._fit(dimension)
        return points, dimension

    async def _write_new(self, prepared: tuple[list[models.PointStruct], int]) -> None:
        await self._write("insert", *prepared)

    async def _write(self, action: str, points: Sequence[models.PointStruct], dimension: int) -> None:
        """Upsert points in batches, creating the collection (again, if it was dropped meanwhile)."""
        for attempt in range(2):
            await self._fit(dimension)
            try:
                for batch in chunks(points, _WRITE_BATCH):
                    await self._call(
                        action,
                        "upsert",
                        collection_name=self.collection_name,
                        points=for_mode(batch, self._keyword),
                    )
                return
            except CollectionMissing:  # dropped meanwhile (by another object or process): create it again
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
        except CollectionMissing:
            return 0
        return matching

    # --- writes

    async def upsert(self, records: Sequence[Record]) -> None:
        if not records:
            return
        await self._write("upsert", await self._points(records), len(records[0].vector))

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
        # One replace at a time (in this process): two overlapping ones would each delete the other's rows.
        async with self.exclusive():
            await self.upsert(records)
            stale = models.Filter(must=[in_scope], must_not=[has_ids(r.id for r in records)])
            return await self._delete_matching(stale)

    async def drop(self) -> None:
        with suppress(CollectionMissing):  # dropping a missing collection is fine
            await self._call("drop collection", "delete_collection", collection_name=self.collection_name)
        self._forget()

    # --- reads

    async def search_many(
        self, vectors: Sequence[Sequence[float]], *, top_k: int, filter: Filter | None = None
    ) -> list[list[RetrievalResult]]:
        """One ranking per query vector, best first. Concurrent calls with the same filter are coalesced into
        one `query_batch_points` call (each query keeps its own `top_k`)."""
        check_top_k(top_k)
        if len(vectors) == 0:
            return []
        flt = self._where(filter)
        if not await self._open():
            return [[] for _ in vectors]
        queries: list[_Query] = [
            (query.tolist(), top_k, flt, None) for query in query_vectors(vectors, self._dimension)
        ]
        # Keyed by the parsed filter so that a query the server rejects only fails its own batch.
        return await self._searches.submit_many(filter, queries)

    async def keyword_search(
        self, text: str, *, top_k: int, filter: Filter | None = None
    ) -> list[RetrievalResult]:
        """Rows ranked by BM25 of their text to `text`, best first: the query's terms (weight 1 each) against
        the collection's keyword sparse vectors, IDF applied by Qdrant; the terms are made by the server or
        here (`keyword_mode`). Rows sharing no term with the query are not returned; a query of stop words
        only (`mini.stores.sparse.ENGLISH_STOP_WORDS`) matches nothing."""
        check_top_k(top_k)
        check_query_text(text)
        flt = self._where(filter)
        if not await self._open():
            return []
        mode = self._keyword
        if mode is None:
            raise no_keyword_index("Qdrant", self.collection_name, "keyword (BM25) sparse vector")
        query = keyword_query(text, mode)
        if query is None:
            return []
        using = keyword_vector(mode)
        # Batched apart from dense searches: keyed by (vector name, filter).
        return (await self._searches.submit_many((using, filter), [(query, top_k, flt, using)]))[0]

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
        except CollectionMissing:
            return [[] for _ in items]
        return [[hit(point) for point in response.points] for response in responses]

    async def count(self, filter: Filter | None = None) -> int:
        flt = self._where(filter)
        if not await self._open():
            return 0
        try:
            return await self._count(flt)
        except CollectionMissing:
            return 0

    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        if not ids or not await self._open():
            return set()
        by_point = {point_id(i): i for i in ids}
        found: set[str] = set()
        try:
            for batch in chunks(list(by_point), _ID_BATCH):
                points = await self._call(
                    "id lookup",
                    "retrieve",
                    collection_name=self.collection_name,
                    ids=list(batch),
                    with_payload=False,
                    with_vectors=False,
                )
                found.update(by_point[str(p.id)] for p in points if str(p.id) in by_point)
        except CollectionMissing:
            return set()
        return found

    def _where(self, filter: Filter | None) -> models.Filter | None:
        return to_qdrant(filter) if filter is not None else None

    async def _get(
        self, ids: Sequence[str] | None, flt: models.Filter | None, include_vectors: bool, limit: int | None
    ) -> list[Record]:
        """Rows by ids and/or filter via paginated scroll; vectors (unit length, float32) only if asked."""
        from qdrant_client import models

        # Id lists are split into batches of bounded size (one scroll each), the filter ANDed to each.
        id_batches: list[Sequence[str] | None] = (
            list(chunks(list(ids), _ID_BATCH)) if ids is not None else [None]
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
                        records += await asyncio.to_thread(records_from_points, points, True)
                    else:
                        records += records_from_points(points, False)
                    if offset is None:
                        break
                if limit is not None and len(records) >= limit:
                    break
        except CollectionMissing:
            return []
        return records[:limit] if limit is not None else records

    async def aclose(self) -> None:
        """Release this object's clients; the next call reopens. A local directory's client closes (and its
        file lock goes) when the last backend object using it is closed."""
        self._opened = False
        if isinstance(self._conn, LocalClient):
            with self._acquire_lock:
                acquired, self._acquired = self._acquired, False
            if acquired:
                await self._conn.release()
        else:
            await self._conn.release()
        self._open_locks.pop_current()
