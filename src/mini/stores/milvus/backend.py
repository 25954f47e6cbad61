"""The Milvus backend: Milvus Lite for a `*.db` path, a Milvus server, cluster or Zilliz Cloud for a URL."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from mini._batching import Coalescer
from mini._portal import PerLoop
from mini.errors import StoreError
from mini.stores._common import (
    BackendSkeleton,
    WriterLock,
    check_query_text,
    check_top_k,
    convert,
    no_keyword_index,
    query_vectors,
)
from mini.stores.base import Record
from mini.stores.filters import Filter
from mini.stores.milvus.clients import (
    Client,
    LiteClient,
    ServerClient,
    load_pymilvus,
    map_milvus_errors,
    parse_uri,
    quiet_lite_index_poll,
    shown_url,
)
from mini.stores.milvus.expr import (
    ID_FIELD,
    METADATA_FIELD,
    RawExpression,
    id_in,
    quote,
    to_expr,
)
from mini.stores.milvus.rows import (
    SPARSE_FIELD,
    TEXT_FIELD,
    VECTOR_FIELD,
    count_of,
    has_keyword_index,
    id_column,
    keyword_rankings,
    milvus_rows,
    records_from_rows,
    schema_dimension,
    search_rankings,
)
from mini.stores.milvus.schema import collection_schema, index_params
from mini.stores.sparse import tokenize
from mini.types import RetrievalResult

logger = logging.getLogger("mini.stores")

# Ids per `id in [...]` predicate, rows per write request and rows per page of a `get`: keeps expressions
# and gRPC messages small (a page of 1,000 x 384 floats is 1.5 MB; servers refuse > 16,384 rows per query).
_ID_BATCH = 1_000
_WRITE_ROWS = 1_000
_PAGE_ROWS = 1_000
_MAX_TOP_K = 16_384  # Milvus's limit on hits per query vector


def _both(*parts: str | None) -> str:
    present = [p for p in parts if p]
    return " and ".join(f"({p})" for p in present) if len(present) > 1 else (present[0] if present else "")


def _is_unimplemented(exc: BaseException | None) -> bool:
    """A gRPC UNIMPLEMENTED status: the server lacks the method called."""
    code = getattr(exc, "code", None)
    return callable(code) and getattr(code(), "name", None) == "UNIMPLEMENTED"


class MilvusBackend(BackendSkeleton[list[dict[str, Any]], str]):
    """Vectors, text and JSON metadata in one Milvus collection; COSINE metric, score = cosine similarity.

    `uri`: a path ending in `.db` is Milvus Lite (embedded, one process per path); `http(s)://host:port`
    (or `milvus://host:port`) is a server, a cluster or Zilliz Cloud, with `token` ("user:password" or an API
    key). Construction does no I/O; the collection is created on first write (FLAT index on Lite, exact;
    AUTOINDEX on servers, which Zilliz Cloud requires) with Strong consistency, so reads see every write.
    Besides `metadata`, each row stores `source`/`has_source` columns and a `kinds` JSON object that makes
    filters type-strict (see `mini.stores.milvus.expr`). `keyword_search` is Milvus's full-text search: a
    BM25 function fills a sparse field from `text` (see `schema._ANALYZER`); collections created without it raise
    `UnsupportedOperationError` there and must be re-created. Reads, `delete` and `keyword_search` also take
    a `RawExpression` (trusted Milvus expression text) in place of a parsed filter. Reads of a Lite path that
    does not exist yet find nothing (0, no rows) and create nothing.
    """

    # Milvus names: a letter or '_' first, then letters, digits and '_' (no '-', unlike LanceDB).
    name_pattern: ClassVar[re.Pattern[str]] = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
    name_rule: ClassVar[str] = (
        "Milvus allows letters, digits and '_' (not '-'), starting with a letter or '_'"
    )

    def __init__(
        self,
        uri: str,
        *,
        collection_name: str = "docs",
        dimension: int | None = None,
        token: str | None = None,
        index_type: str | None = None,
        connect_timeout: float = 5.0,
        request_timeout: float | None = 120.0,
        max_concurrent_searches: int | None = None,
    ) -> None:
        super().__init__(collection_name, dimension)
        path, url = parse_uri(uri)
        self.path = path
        self.url = url
        self.writes = WriterLock(f"milvus:{path or shown_url(url or '')}", collection_name)
        self._secret = token
        self._client: Client
        if path is not None:
            self._client = LiteClient(path, connect_timeout)
        else:
            assert url is not None
            self._client = ServerClient(url, token, connect_timeout)
        self.index_type = index_type or ("FLAT" if path is not None else "AUTOINDEX")
        self._index_type_given = index_type is not None
        self.request_timeout = request_timeout
        self._ready = False  # the collection exists and is loaded (shared by every loop: it is server state)
        self._keyword = False  # the open collection has the BM25 function (see rows.has_keyword_index)
        self._state = threading.Lock()  # guards _ready/_dimension/_keyword; never held across an await
        self._open_locks: PerLoop[asyncio.Lock] = PerLoop(asyncio.Lock)
        # Lite runs one call at a time anyway; a server gets a few multi-vector searches in flight.
        limit = 1 if path is not None else (max_concurrent_searches or 8)
        self._searches: Coalescer[tuple[int, str], np.ndarray, list[RetrievalResult]] = Coalescer(
            self._search_batch, max_batch=256, max_concurrent=limit
        )
        self._keyword_searches: Coalescer[tuple[int, str], str, list[RetrievalResult]] = Coalescer(
            self._keyword_batch, max_batch=256, max_concurrent=limit
        )

    def __repr__(self) -> str:
        where = self.path if self.path is not None else shown_url(self.url or "")
        return f"MilvusBackend({where!r}, collection_name={self.collection_name!r})"

    async def _call(
        self, action: str, method: str, /, *args: Any, then: Callable[[Any], Any] | None = None, **kw: Any
    ) -> Any:
        return await self._client.call(
            method,
            self.collection_name,
            *args,
            errors=functools.partial(map_milvus_errors, action, secret=self._secret),
            then=then,
            timeout=self.request_timeout,
            **kw,
        )

    async def _open(self, *, create_dimension: int | None = None) -> bool:
        """Whether the collection exists (then loaded, dimension read); created if `create_dimension` is given."""
        if self._ready:
            return True
        async with self._open_locks.get():
            if self._ready:
                return True
            if create_dimension is None and not await self._may_exist():
                return False
            if not await self._call("open collection", "has_collection"):
                if create_dimension is None:
                    return False
                await self._create(create_dimension)
            description = await self._call("describe collection", "describe_collection")
            dimension = schema_dimension(description)
            keyword = has_keyword_index(description)
            # A collection reopened by a new process (or released on a server) must be loaded to be read.
            await self._call("load collection", "load_collection")
            with self._state:
                self._dimension, self._keyword, self._ready = dimension, keyword, True
            return True

    async def _may_exist(self) -> bool:
        """False for a Milvus Lite path with nothing on disk yet: a read there finds nothing, without starting a
        Lite server (which would create the files as a side effect of a `count()` and cost seconds)."""
        if self.path is None:
            return True
        return await asyncio.to_thread(os.path.exists, self.path)

    async def _create(self, dimension: int) -> None:
        load_pymilvus()
        schema = collection_schema(dimension)
        lite = self.path is not None or await self._server_is_lite()
        # A Lite server behind a URL gets what a Lite path gets: exact FLAT search unless told otherwise.
        vector_index = "FLAT" if lite and not self._index_type_given else self.index_type
        indexes = index_params(vector_index, lite=lite)
        try:
            await self._call(
                "create collection", "create_collection", schema=schema, consistency_level="Strong"
            )
        except StoreError as exc:
            if "already exist" not in str(exc):
                raise
            return  # another process or backend object won the race: its collection (and index) is used
        for index in indexes:  # one request each: see _create_index
            await self._create_index(index, lite)
        logger.info(
            "created Milvus collection %r (dimension %d) in %r", self.collection_name, dimension, self
        )

    async def _server_is_lite(self) -> bool:
        """Whether the server at `self.url` is Milvus Lite's own gRPC server (`milvus_lite.adapter.grpc`), which
        names itself "milvus_lite-<version>". Asked once per collection created. A server that will not say
        (a managed service may restrict the call) is taken for a real Milvus: its defaults are the safe ones."""
        try:
            version = await self._client.call(
                "get_server_version",
                errors=functools.partial(map_milvus_errors, "version", secret=self._secret),
                timeout=self.request_timeout,
            )
        except StoreError as exc:
            logger.debug("Milvus server version unknown (%s): taken for a Milvus server", exc)
            return False
        return str(version).startswith("milvus_lite")

    async def _create_index(self, index: Any, lite: bool) -> None:
        """Create one index (`index` holds one); the collection is new and empty, so there is nothing to build.

        Lite path: `sync=False`, because the sync client otherwise polls the index state every 0.5 s (0.5 s per
        new collection). Server path: `AsyncMilvusClient.create_index` always polls, starting with an
        AllocTimestamp call that Milvus Lite's server does not implement (UNIMPLEMENTED, raised after its
        CreateIndex succeeded): on Lite that one error is the expected end, since Lite builds indexes at load.
        One index per request, so the sparse index is still created after the dense one's poll fails."""
        if self.path is not None:
            await self._call("create index", "create_index", index, sync=False)
            return
        if lite:
            quiet_lite_index_poll()
        try:
            await self._call("create index", "create_index", index)
        except StoreError as exc:
            if not (lite and _is_unimplemented(exc.__cause__)):
                raise

    async def _collection_exists(self) -> bool:
        return await self._open()

    async def _create_collection(self, dimension: int) -> None:
        # One creator at a time per collection in this process (the writer lock; waiters then find the
        # collection). Milvus servers settle racing creates themselves ("already exists"), but Milvus Lite's
        # server checks then creates without a lock: the loser got "File exists" and the winner's next
        # call "collection does not exist" (concurrent_first_writes_do_not_fail, tests/stores/test_milvus_server.py).
        async with self.exclusive():
            await self._open(create_dimension=dimension)

    async def _prepare(self, records: Sequence[Record]) -> list[dict[str, Any]]:
        """Validate and convert a batch, then open (or create) the collection its vectors fit."""
        got, rows = await convert(milvus_rows, records)
        await self._fit(got)
        return rows

    async def _write_new(self, prepared: list[dict[str, Any]]) -> None:
        # Check then insert (`insert`): Milvus itself would keep two rows with one id.
        await self._write("insert", prepared)

    async def _write(self, method: str, rows: list[dict[str, Any]]) -> None:
        for start in range(0, len(rows), _WRITE_ROWS):
            await self._call(method, method, rows[start : start + _WRITE_ROWS])

    async def upsert(self, records: Sequence[Record]) -> None:
        if records:
            await self._write("upsert", await self._prepare(records))

    async def delete(
        self, *, ids: Sequence[str] | None = None, filter: Filter | RawExpression | None = None
    ) -> int:
        predicates = [self._where(filter)] if filter is not None else []
        ids = list(ids or [])
        predicates += [id_in(ids[i : i + _ID_BATCH]) for i in range(0, len(ids), _ID_BATCH)]
        if not predicates or not await self._open():
            return 0
        deleted = 0
        # Milvus does not report deleted rows (it echoes the ids asked for): count, then delete. A row deleted
        # by an earlier predicate is not counted again.
        for predicate in predicates:
            matching = await self._call(
                "count", "query", filter=predicate, output_fields=["count(*)"], then=count_of
            )
            if matching:
                await self._call("delete", "delete", filter=predicate)
                deleted += matching
        return deleted

    async def replace(self, records: Sequence[Record], *, scope: Filter) -> int:
        """Upsert `records`, then delete the rows in `scope` that are not among them; returns rows deleted.

        Milvus has no atomic merge-and-delete: between the two steps readers may briefly see the new rows next
        to the old ones they replace (never a scope with rows missing)."""
        where = to_expr(scope)
        if not records:
            return await self.delete(filter=scope)
        # One replace at a time (in this process): two overlapping ones would each delete the other's rows.
        async with self.exclusive():
            await self.upsert(records)
            keep = {r.id for r in records}
            stale = [i for i in await self._ids_in(where) if i not in keep]
            return await self.delete(ids=stale) if stale else 0

    async def _ids_in(self, where: str) -> list[str]:
        return [r.id for r in await self._paged(where, [ID_FIELD], None, False)]

    def _where(self, filter: Filter | RawExpression | None) -> str:
        if isinstance(filter, RawExpression):  # trusted text, see RawExpression
            return filter.text
        return to_expr(filter) if filter is not None else ""

    async def _get(
        self, ids: Sequence[str] | None, where: str, include_vectors: bool, limit: int | None
    ) -> list[Record]:
        fields = [ID_FIELD, TEXT_FIELD, METADATA_FIELD] + ([VECTOR_FIELD] if include_vectors else [])
        if ids is None:
            return await self._paged(where, fields, limit, include_vectors)
        records: list[Record] = []
        wanted = list(dict.fromkeys(ids))
        for start in range(0, len(wanted), _ID_BATCH):
            batch = wanted[start : start + _ID_BATCH]
            size = len(batch) if limit is None else min(len(batch), limit - len(records))
            found = await self._call(
                "get",
                "query",
                filter=_both(id_in(batch), where),
                output_fields=fields,
                limit=size,
                then=lambda rows: records_from_rows(rows, include_vectors),
            )
            records += found[:size]  # Milvus Lite ignores `limit` on a primary key lookup
            if limit is not None and len(records) >= limit:
                break
        return records

    async def _paged(
        self, where: str | None, fields: list[str], limit: int | None, include_vectors: bool
    ) -> list[Record]:
        """Every row matching `where` (up to `limit`), a page at a time in id order (servers cap one query)."""
        records: list[Record] = []
        cursor: str | None = None
        while limit is None or len(records) < limit:
            size = _PAGE_ROWS if limit is None else min(_PAGE_ROWS, limit - len(records))
            after = f"{ID_FIELD} > {quote(cursor)}" if cursor is not None else f'{ID_FIELD} != ""'
            page: list[Record] = await self._call(
                "get",
                "query",
                filter=_both(where, after),
                output_fields=fields,
                limit=size,
                # What pymilvus's query iterator sends: results come back in primary key order.
                iterator="True",
                reduce_stop_for_best="True",
                then=lambda rows: records_from_rows(rows, include_vectors),
            )
            records += page
            if len(page) < size:
                break
            cursor = max(r.id for r in page)
        return records if limit is None else records[:limit]

    async def count(self, filter: Filter | RawExpression | None = None) -> int:
        where = self._where(filter)
        if not await self._open():
            return 0
        result: int = await self._call(
            "count", "query", filter=where, output_fields=["count(*)"], then=count_of
        )
        return result

    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        ids = list(dict.fromkeys(ids))
        if not ids or not await self._open():
            return set()
        found: set[str] = set()
        for start in range(0, len(ids), _ID_BATCH):
            batch = ids[start : start + _ID_BATCH]
            rows = await self._call(
                "id lookup",
                "query",
                filter=id_in(batch),
                output_fields=[ID_FIELD],
                limit=len(batch),
                then=id_column,
            )
            found.update(rows)
        return found

    async def search_many(
        self,
        vectors: Sequence[Sequence[float]],
        *,
        top_k: int,
        filter: Filter | RawExpression | None = None,
    ) -> list[list[RetrievalResult]]:
        """One ranking per query vector. Concurrent calls with the same `top_k` and filter are coalesced into
        one multi-vector search (Milvus Lite answers one call at a time; a batch costs little more than one)."""
        check_top_k(top_k, _MAX_TOP_K, "Milvus")
        if len(vectors) == 0:
            return []
        where = self._where(filter)
        if not await self._open():
            return [[] for _ in vectors]
        return await self._searches.submit_many((top_k, where), query_vectors(vectors, self._dimension))

    async def _search_batch(
        self, key: tuple[int, str], vectors: list[np.ndarray]
    ) -> list[list[RetrievalResult]]:
        return await self._search_request("search", key, vectors, "COSINE", search_rankings)

    async def _search_request(
        self,
        action: str,
        key: tuple[int, str],
        data: list[Any],
        metric: str,
        then: Callable[[Any], Any],
        **kw: Any,
    ) -> list[list[RetrievalResult]]:
        """One search request for a batch of queries sharing `key` (top_k, filter): dense vectors or texts."""
        top_k, where = key
        result: list[list[RetrievalResult]] = await self._call(
            action,
            "search",
            data=data,
            limit=top_k,
            filter=where,
            output_fields=[TEXT_FIELD, METADATA_FIELD],
            search_params={"metric_type": metric},
            then=then,
            **kw,
        )
        return result

    async def keyword_search(
        self, text: str, *, top_k: int, filter: Filter | RawExpression | None = None
    ) -> list[RetrievalResult]:
        """Milvus full-text search: BM25 of the analysed `text` field against the analysed query, best first.

        Scores are BM25 scores (positive). Concurrent calls with the same `top_k` and filter share one request.
        Milvus Lite computes IDF per segment and, with a filter, over the matching unflushed rows only, so its
        scores (not which rows match) can differ from a server's."""
        check_top_k(top_k, _MAX_TOP_K, "Milvus")
        check_query_text(text)
        where = self._where(filter)
        if not await self._open():
            return []
        if not self._keyword:
            raise no_keyword_index("Milvus", self.collection_name, "full-text (BM25) field")
        # Only stop words or punctuation: no term to match, so no row matches (and a server is not asked to
        # search with an empty sparse vector).
        if not tokenize(text):
            return []
        return (await self._keyword_searches.submit_many((top_k, where), [text]))[0]

    async def _keyword_batch(self, key: tuple[int, str], texts: list[str]) -> list[list[RetrievalResult]]:
        return await self._search_request(
            "keyword search", key, texts, "BM25", keyword_rankings, anns_field=SPARSE_FIELD
        )

    async def drop(self) -> None:
        if await self._may_exist() and await self._call("open collection", "has_collection"):
            await self._call("drop collection", "drop_collection")
        with self._state:
            self._ready = False
            self._keyword = False
            self._dimension = self._configured_dimension

    async def aclose(self) -> None:
        """Release this loop's client; the next call reconnects and rereads the collection."""
        with self._state:
            self._ready = False
        self._open_locks.pop_current()
        with map_milvus_errors("close", secret=self._secret):
            await self._client.aclose()
