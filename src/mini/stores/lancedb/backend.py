"""The embedded LanceDB backend: one table per collection in a local directory, driven by LanceDB's async API.

Past ~500 lines (~610) because one class holds the table's shared handles, locks and coalescers, and every
operation uses them; the parts without that state already live beside it (`native` reads, `keyword` scores,
`hits` results, `rows`, `sql`, `commits`). The next cut, when it grows again: the keyword operations
(`keyword_search`, `_keyword_batch`, `_keyword_direct`, `_ensure_fts`, `prepare_search`) into a component that
takes the table handles and locks it needs, as `KeywordScores` does.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from mini._batching import Coalescer
from mini._portal import PerLoop
from mini._tasks import to_the_end
from mini.errors import StoreError
from mini.stores._common import (
    BackendSkeleton,
    WriterLock,
    check_query_text,
    check_top_k,
    convert,
    query_vectors,
)
from mini.stores.base import Record
from mini.stores.filters import Filter
from mini.stores.lancedb import native
from mini.stores.lancedb.commits import commit, delete_extra_copies, is_commit_conflict, map_lancedb_errors
from mini.stores.lancedb.hits import rankings_from_hits
from mini.stores.lancedb.keyword import KeywordScores
from mini.stores.lancedb.rows import (
    TEXT_COLUMN,
    VECTOR_COLUMN,
    arrow_rows,
    records_from_arrow,
    schema_dimension,
    table_schema,
)
from mini.stores.lancedb.sql import ID_COLUMN, METADATA_COLUMN, id_in, to_where
from mini.types import RetrievalResult

if TYPE_CHECKING:
    from lancedb.db import AsyncConnection
    from lancedb.index import FTS
    from lancedb.table import AsyncTable

logger = logging.getLogger("mini.stores")

# Ids per `id IN (...)` predicate: keeps SQL strings and DataFusion IN-lists small for big batches.
_ID_BATCH = 1_000
# Every write makes a table version; optimize() removes versions older than this. Not zero: another process
# may still be reading an older version (DESIGN.md: a second process can read and write the same table).
_KEEP_VERSIONS = timedelta(minutes=10)
# Other processes' (or other backend objects') writes become visible to reads after at most this long.
# Zero costs nothing measurable locally (search 6.02 vs 6.07 ms, count 1.41 vs 1.37 ms at 2k rows).
_READ_CONSISTENCY = timedelta(seconds=0)
_python_layer_ready: list[bool] = []  # [True] once `lancedb` (the Python layer) is imported


async def import_lancedb() -> None:
    """Import the `lancedb` package (1.5-2 s of Python, see `mini.stores.lancedb.native`) in a worker thread
    the first time an operation needs it, so the event loop keeps running meanwhile."""
    if not _python_layer_ready:
        await asyncio.to_thread(importlib.import_module, "lancedb.table")
        _python_layer_ready.append(True)


def _delete_reports_rows() -> bool:
    # DeleteResult.num_deleted_rows exists at runtime in 0.40 (not in its type stub) but not in older releases,
    # which pyproject still allows: there, matching rows are counted before deleting.
    engine = sys.modules.get(native.EXTENSION)
    return hasattr(getattr(engine, "DeleteResult", None), "num_deleted_rows")


def _path_from_uri(uri: str) -> str:
    path = uri[len("lancedb://") :] if uri.lower().startswith("lancedb://") else uri
    # Resolved now (no I/O) so a later chdir cannot move the store.
    return os.path.abspath(os.path.expanduser(path or "./mini_data"))


def _fts_config() -> FTS:
    """Measured on BEIR SciFact (5,183 abstracts): nDCG@10 0.684 with these settings (the library's defaults,
    spelled out so an upgrade cannot change them silently); BEIR's BM25 0.665, bm25s 0.687."""
    from lancedb.index import FTS

    return FTS(
        base_tokenizer="simple",
        language="English",
        lower_case=True,
        stem=True,
        remove_stop_words=True,
        ascii_folding=True,
        with_position=False,
    )


async def _has_fts_index(table: AsyncTable) -> bool:
    return any(
        TEXT_COLUMN in ix.columns and "fts" in str(ix.index_type).lower() for ix in await table.list_indices()
    )


def _id_predicates(ids: Sequence[str]) -> list[str]:
    return [id_in(ids[start : start + _ID_BATCH]) for start in range(0, len(ids), _ID_BATCH)]


class LanceDBBackend(BackendSkeleton[tuple["AsyncTable", pa.Table], str | None]):
    """Vectors, text and JSON metadata in one LanceDB table; cosine distance, score = 1 - distance.

    LanceDB's async handles are not tied to the event loop that created them (checked: one table handle
    works from successive `asyncio.run` calls and from other threads' loops), so one connection and one
    table handle are shared by every loop. Only asyncio primitives are per loop (`PerLoop`): the lock that
    serialises opening and the semaphore that bounds concurrent scans.

    The handles are LanceDB's native (Rust) connection and table when `mini.stores.lancedb.native` can load
    the engine alone: opening and vector search then never import the `lancedb` package, and the other
    operations wrap the same table in `AsyncTable` (importing `lancedb` in a thread the first time).
    """

    def __init__(
        self,
        uri: str = "./mini_data",
        *,
        collection_name: str = "docs",
        dimension: int | None = None,
        token: str | None = None,
        index_threshold: int = 50_000,
        max_concurrent_searches: int | None = None,
    ) -> None:
        super().__init__(collection_name, dimension)
        del token  # LanceDB Cloud is not supported yet; an embedded store needs no credentials.
        self.path = _path_from_uri(uri)
        # Every commit holds this store's writer lock, also across processes: a merge then always sees the
        # rows of every earlier commit, so concurrent ingestions cannot store an id twice.
        lock_file = os.path.join(self.path, f"{collection_name}.lance.lock")
        self.writes = WriterLock(self.path, collection_name, lock_file=lock_file)
        self.index_threshold = index_threshold
        # Native handles (see the class docstring), or lancedb's AsyncConnection/AsyncTable when the native
        # path is off; `_native` says which, once connected.
        self._db: Any = None
        self._table: Any = None
        self._native: bool = False
        self._handles = threading.Lock()  # guards the shared handles; never held across an await
        self._open_locks: PerLoop[asyncio.Lock] = PerLoop(asyncio.Lock)
        # Unbounded, 64 concurrent flat searches over 20k x 384 took 4-8 s (64 sequential: 1-2 s) and stalled
        # the event loop for 250 ms on 2 cores; with as many in flight as cores: ~1 s and < 10 ms.
        limit = max_concurrent_searches or max(2, os.cpu_count() or 2)
        self._search_slots: PerLoop[asyncio.Semaphore] = PerLoop(lambda: asyncio.Semaphore(limit))
        self._fts_ready = False  # the table has a full-text index on `text` (checked once, then kept)
        self._fts_locks: PerLoop[asyncio.Lock] = PerLoop(asyncio.Lock)
        self._searches: Coalescer[tuple[int, str | None], np.ndarray, list[RetrievalResult]] = Coalescer(
            self._search_batch, max_batch=256, max_concurrent=limit
        )
        # Unfiltered keyword queries: concurrent ones share a batch, served from cached per-word BM25 scores.
        self._keyword_scores = KeywordScores()
        self._keyword_batches: Coalescer[int, str, list[RetrievalResult] | None] = Coalescer(
            self._keyword_batch, max_batch=256, max_concurrent=limit
        )

    def __repr__(self) -> str:
        return f"LanceDBBackend({self.path!r}, collection_name={self.collection_name!r})"

    async def _connection(self) -> Any:
        """The connection handle: native, or lancedb's AsyncConnection (`self._native` says which)."""
        db = self._db
        if db is None:
            engine = await asyncio.to_thread(native.extension)  # a first load reads a 185 MB library
            with map_lancedb_errors("connect"):
                if engine is not None:
                    consistency = _READ_CONSISTENCY.total_seconds()
                    db = await native.connect(engine, self.path, read_consistency_s=consistency)
                else:
                    await import_lancedb()
                    import lancedb

                    db = await lancedb.connect_async(self.path, read_consistency_interval=_READ_CONSISTENCY)
            with self._handles:
                if self._db is None:
                    self._db, self._native = db, engine is not None
                db = self._db
        return db

    async def _async_connection(self) -> AsyncConnection:
        db = await self._connection()
        if not self._native:
            return db
        await import_lancedb()
        from lancedb.db import AsyncConnection

        return AsyncConnection(db)

    async def _get_table(self, *, create_dimension: int | None = None) -> AsyncTable | None:
        """The open table as lancedb's AsyncTable; None if it does not exist and `create_dimension` is not
        given."""
        handle = await self._open_handle(create_dimension=create_dimension)
        if handle is None or not self._native:
            return handle
        await import_lancedb()
        from lancedb.table import AsyncTable

        return AsyncTable(handle)  # what AsyncConnection.open_table returns for this handle

    async def _read_table(self) -> Any:
        """The open table for reading (searches, counts): a `native.ReadTable` on the native path, which offers
        the same read calls as an AsyncTable without importing `lancedb`; None if there is no table."""
        handle = await self._open_handle()
        if handle is None or not self._native:
            return handle
        return native.ReadTable(handle)

    async def _open_handle(self, *, create_dimension: int | None = None) -> Any:
        """The open table's handle (native, or an AsyncTable: see `_connection`); None if it does not exist
        and `create_dimension` is not given."""
        table = self._table
        if table is not None:
            return table
        async with self._open_locks.get():
            if self._table is not None:
                return self._table
            table = await self._open()
            if table is not None:
                return await self._keep(table)
        if create_dimension is None:
            return None
        # Created outside the open lock: creating takes the store's writer lock, and a writer holding that lock
        # (a section, see `exclusive`) may itself be waiting to open the table.
        return await self._keep(await self._create(create_dimension))

    async def _keep(self, table: Any) -> Any:
        """The table handle every caller shares: `table`, unless another caller (or loop) kept one first."""
        with map_lancedb_errors("read schema"):
            schema = await table.schema()
        dimension = schema_dimension(schema)
        with self._handles:
            if self._table is None:
                self._table, self._dimension = table, dimension
            return self._table

    async def _open(self) -> Any:
        """The table's handle (the connection's kind), None if there is no such table."""
        db = await self._connection()
        with map_lancedb_errors("open table"):
            try:
                if self._native:
                    return await native.open_table(db, self.collection_name)
                return await db.open_table(self.collection_name)
            except ValueError as exc:
                if "was not found" in str(exc):
                    return None
                raise

    async def _create(self, dimension: int) -> Any:
        # Two concurrent creates can both succeed in LanceDB (the second commits an Overwrite), after which
        # the first creator's writes fail or vanish: creators take turns, in this process and across them.
        db = await self._async_connection()
        async with self.writes.hold():
            table = await self._open()  # created by whoever held the lock before us
            if table is not None:
                return table
            # Not exist_ok=True: it compares our schema with the stored one, whose pa.json_() column became
            # lance.json, and fails. If another process won the race, open its table instead.
            with map_lancedb_errors("create table"):
                try:
                    table = await db.create_table(self.collection_name, schema=table_schema(dimension))
                except ValueError as exc:
                    if "already exists" not in str(exc):
                        raise
                    table = await self._open()
                    if table is None:
                        raise StoreError(f"table {self.collection_name!r} vanished while created") from exc
                    return table
        logger.info("created table %r (dimension %d) in %s", self.collection_name, dimension, self.path)
        return table._inner if self._native else table  # the handle kind `_open` returns

    async def _collection_exists(self) -> bool:
        return await self._open_handle() is not None

    async def _create_collection(self, dimension: int) -> None:
        await self._get_table(create_dimension=dimension)

    async def _prepare(self, records: Sequence[Record]) -> tuple[AsyncTable, pa.Table]:
        """Validate and convert a batch, then open (or create) the table its vectors fit."""
        rows = await convert(arrow_rows, records)  # Arrow building: ~20 ms per 1M floats
        got = schema_dimension(rows.schema)
        await self._fit(got)
        table = await self._get_table(create_dimension=got)  # (re)created if dropped meanwhile
        assert table is not None  # create_dimension given
        return table, rows

    async def _write_new(self, prepared: tuple[AsyncTable, pa.Table]) -> None:
        table, rows = prepared
        await commit(self.writes, "insert", lambda: table.add(rows))

    async def append(self, records: Sequence[Record]) -> None:
        """Write rows whose ids are not stored, as the caller has checked inside a writer-lock section it still
        holds (`exclusive`): one plain append. An upsert's merge joins the batch against every stored id, which
        grows with the table (ingestion's commits of new files use this instead; see `mini.ingest.state`)."""
        if records:
            await self._write_new(await self._prepare(records))

    async def write_state(self) -> tuple[int, int] | None:
        """The table's (version, row count), None if there is no table. The version changes with every commit,
        whoever makes it: a writer that finds the state it left after its own last commit knows no one else
        wrote since. (The row count too: a table dropped and re-created elsewhere counts versions from 1 again.)"""
        table = await self._get_table()
        if table is None:
            return None
        with map_lancedb_errors("read version"):
            return int(await table.version()), int(await table.count_rows())

    async def upsert(self, records: Sequence[Record]) -> None:
        if not records:
            return
        table, rows = await self._prepare(records)
        merge = table.merge_insert(ID_COLUMN).when_matched_update_all().when_not_matched_insert_all()
        result = await commit(self.writes, "upsert", lambda: merge.execute(rows))
        logger.debug("upsert: %d updated, %d inserted", result.num_updated_rows, result.num_inserted_rows)

    async def delete(self, *, ids: Sequence[str] | None = None, filter: Filter | None = None) -> int:
        predicates = [to_where(filter)] if filter is not None else []
        predicates += _id_predicates(list(ids or []))
        if not predicates:
            return 0
        table = await self._get_table()
        if table is None:
            return 0

        reports_rows = _delete_reports_rows()

        async def delete_one(predicate: str) -> int:
            before = None if reports_rows else await table.count_rows(predicate)
            result = await table.delete(predicate)
            return before if before is not None else int(getattr(result, "num_deleted_rows", 0))

        deleted = 0
        # One predicate (one commit) per id batch; a row deleted by an earlier one is not counted again.
        for predicate in predicates:
            deleted += await commit(self.writes, "delete", lambda p=predicate: delete_one(p))  # type: ignore[misc]
        return deleted

    async def replace(self, records: Sequence[Record], *, scope: Filter) -> int:
        if not records:
            return await self.delete(filter=scope)
        where = to_where(scope)
        table, rows = await self._prepare(records)
        # One merge commit: readers see the old rows of the scope or the new ones, never a mix.
        merge = (
            table.merge_insert(ID_COLUMN)
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete(where)
        )
        result = await commit(self.writes, "replace", lambda: merge.execute(rows))
        return int(result.num_deleted_rows)

    async def delete_duplicates(self, ids: Sequence[str]) -> int:
        """Delete all but one stored copy of each of `ids` (see `mini.stores.base.delete_duplicates`): the
        copies are told apart by Lance's row address, read and deleted in one commit under the writer lock
        (no compaction can move rows in between). Returns the rows deleted."""
        table = await self._get_table() if ids else None
        if table is None:
            return 0

        removed = 0
        for predicate in _id_predicates(list(dict.fromkeys(ids))):
            removed += await commit(
                self.writes,
                "remove duplicates",
                lambda p=predicate: delete_extra_copies(table, p),  # type: ignore[misc]
            )
        return removed

    def _where(self, filter: Filter | None) -> str | None:
        return to_where(filter) if filter is not None else None

    async def _get(
        self, ids: Sequence[str] | None, where: str | None, include_vectors: bool, limit: int | None
    ) -> list[Record]:
        table = await self._get_table()
        if table is None:  # dropped meanwhile
            return []
        # Id lists are split into predicates of bounded size (one query each), the filter ANDed to each.
        id_parts: list[str | None] = [*_id_predicates(list(ids))] if ids is not None else [None]
        columns = [ID_COLUMN, TEXT_COLUMN, METADATA_COLUMN] + ([VECTOR_COLUMN] if include_vectors else [])
        records: list[Record] = []
        for id_part in id_parts:
            predicate = " AND ".join(f"({p})" for p in (id_part, where) if p is not None)
            with map_lancedb_errors("get"):
                query = table.query().select(columns)
                if predicate:
                    query = query.where(predicate)
                if limit is not None:
                    query = query.limit(limit - len(records))
                rows = await to_the_end(query.to_arrow())
            records += await asyncio.to_thread(records_from_arrow, rows, include_vectors)
            if limit is not None and len(records) >= limit:
                break
        return records

    async def drop(self) -> None:
        db = await self._async_connection()
        await commit(
            self.writes, "drop table", lambda: db.drop_table(self.collection_name, ignore_missing=True)
        )
        with self._handles:
            # A dropped table's handle still answers from its cached version: forget it.
            self._fts_ready = False
            self._table = None
            self._dimension = self._configured_dimension
            self._keyword_scores.forget()  # a re-created table counts its versions from 1 again

    async def search_many(
        self, vectors: Sequence[Sequence[float]], *, top_k: int, filter: Filter | None = None
    ) -> list[list[RetrievalResult]]:
        """One ranking per query vector. Concurrent calls with the same `top_k` and filter are coalesced
        into one multi-vector query, which shares a single table scan (see `_search_batch`)."""
        check_top_k(top_k)
        if len(vectors) == 0:
            return []
        where = self._where(filter)
        if await self._open_handle() is None:
            return [[] for _ in vectors]
        return await self._searches.submit_many((top_k, where), query_vectors(vectors, self._dimension))

    async def _search_batch(
        self, key: tuple[int, str | None], vectors: list[np.ndarray]
    ) -> list[list[RetrievalResult]]:
        # Measured here: a LanceDB query costs ~2 ms CPU even on a 21-row table, and an unindexed one scans
        # the whole table; one query with 64 vectors costs ~0.08 ms per vector at 21 rows and ~2.4 ms per
        # vector at 20k rows (vs ~25 ms each alone), because the vectors share one scan.
        top_k, where = key
        table = await self._read_table()
        if table is None:
            return [[] for _ in vectors]
        query = (
            table.query()
            .nearest_to(vectors[0] if len(vectors) == 1 else vectors)
            .distance_type("cosine")
            # `_distance` listed explicitly: otherwise Lance logs a deprecation warning on every search.
            .select([ID_COLUMN, TEXT_COLUMN, METADATA_COLUMN, "_distance"])
            .limit(top_k)
        )
        if where is not None:
            query = query.where(where)
        with map_lancedb_errors("search"):
            hits = await to_the_end(query.to_arrow())
        return rankings_from_hits(hits, len(vectors))

    async def keyword_search(
        self, text: str, *, top_k: int, filter: Filter | None = None
    ) -> list[RetrievalResult]:
        """BM25 over the `text` column through LanceDB's native full-text index (English stemming, stop words
        removed, lower case, ASCII folding). The index is built on first use or by `optimize()`; rows written
        since are still searched (by a slower flat scan) until the next `optimize()` adds them. Unfiltered
        searches are ranked from per-word scores cached per table version (`mini.stores.lancedb.keyword`)."""
        check_top_k(top_k)
        check_query_text(text)
        table = await self._read_table()
        if table is None or not text.strip():
            return []
        await self._ensure_fts(table)
        if filter is None:
            hits = await self._keyword_batches.submit(top_k, text)
            if hits is not None:
                return hits
        where = to_where(filter) if filter is not None else None
        async with self._search_slots.get():  # filtered, or not answered from the cache
            return await self._keyword_direct(table, text, top_k, where)

    async def _keyword_batch(self, top_k: int, texts: list[str]) -> list[list[RetrievalResult] | None]:
        table = await self._read_table()
        if table is None:  # dropped meanwhile
            return [[] for _ in texts]
        async with self._search_slots.get():
            return await self._keyword_scores.search_batch(table, texts, top_k)

    async def _keyword_direct(
        self, table: AsyncTable, text: str, top_k: int, where: str | None = None
    ) -> list[RetrievalResult]:
        """One LanceDB full-text query: filtered searches, and what the keyword cache does not answer."""
        query = (
            table.query()
            .nearest_to_text(text, columns=TEXT_COLUMN)
            .select([ID_COLUMN, TEXT_COLUMN, METADATA_COLUMN, "_score"])
            .limit(top_k)
        )
        if where is not None:
            query = query.where(where)
        with map_lancedb_errors("keyword search"):
            hits = await to_the_end(query.to_arrow())
        names = (ID_COLUMN, TEXT_COLUMN, METADATA_COLUMN, "_score")
        columns = [hits.column(name).to_pylist() for name in names]
        ranking = [
            RetrievalResult(id=i, text=t or "", score=float(s), metadata=json.loads(m or "{}"))
            for i, t, m, s in zip(*columns, strict=True)
        ]
        ranking.sort(key=lambda hit: -hit.score)
        return ranking

    async def prepare_search(self) -> None:
        """Build the full-text index now if the table has none (what the first keyword search would build), e.g.
        at the end of an ingestion, whose process has imported `lancedb` already."""
        table = await self._read_table()
        if table is not None:
            await self._ensure_fts(table)

    async def _ensure_fts(self, table: AsyncTable) -> None:
        if self._fts_ready:
            return
        async with self._fts_locks.get():
            if self._fts_ready:
                return
            with map_lancedb_errors("full-text index"):
                present = await _has_fts_index(table)
            if not present:
                async with self.writes.hold():  # another writer may have built it while we waited
                    with map_lancedb_errors("full-text index"):
                        present = await _has_fts_index(table)
                    if not present:
                        started = time.perf_counter()
                        # Native Rust build, awaited: seconds for 100k rows; the loop stays free meanwhile.
                        writable = await self._get_table()
                        assert writable is not None  # open: `table` is its read view
                        await commit(
                            self.writes,
                            "full-text index",
                            lambda: writable.create_index(TEXT_COLUMN, config=_fts_config()),
                        )
                        elapsed = time.perf_counter() - started
                        logger.info("built full-text index on %r in %.1f s", self.collection_name, elapsed)
            self._fts_ready = True

    async def count(self, filter: Filter | None = None) -> int:
        where = self._where(filter)
        table = await self._read_table()
        if table is None:
            return 0
        async with self._search_slots.get():
            with map_lancedb_errors("count"):
                return int(await table.count_rows(where))

    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        table = await self._get_table() if ids else None
        if table is None:
            return set()
        found: set[str] = set()
        for predicate in _id_predicates(list(ids)):
            with map_lancedb_errors("id lookup"):
                rows = await table.query().where(predicate).select([ID_COLUMN]).to_arrow()
            found.update(rows.column(ID_COLUMN).to_pylist())
        return found

    async def optimize(self) -> None:
        """Compact small writes, drop old versions and, past `index_threshold` rows, build the vector index."""
        table = await self._get_table()
        if table is None:
            return
        try:
            # Also brings indexes up to date.
            stats = await commit(
                self.writes, "optimize", lambda: table.optimize(cleanup_older_than=_KEEP_VERSIONS)
            )
        except StoreError as exc:
            if not is_commit_conflict(exc.__cause__):
                raise
            # An optimisation: skipped when another writer (not taking our lock) keeps winning; the next
            # optimize() catches up. Data written so far is safe either way.
            logger.warning(
                "optimize of %r skipped after repeated commit conflicts: %s", self.collection_name, exc
            )
            return
        logger.debug("optimize %r: %s", self.collection_name, stats)
        with map_lancedb_errors("optimize"):
            rows = await table.count_rows()
        # The full-text index, so the first keyword search after an ingestion does not pay for building it.
        if rows:
            await self._ensure_fts(table)
        if rows < self.index_threshold:
            return
        async with self.writes.hold():
            with map_lancedb_errors("optimize"):
                if any(VECTOR_COLUMN in ix.columns for ix in await table.list_indices()):
                    return
            started = time.perf_counter()
            from lancedb.index import IvfFlat

            # IVF_FLAT: exact distances inside the probed partitions (recall 1.0 in DESIGN.md's measurements)
            # and a build of seconds, where HNSW takes tens of seconds.
            await commit(
                self.writes,
                "vector index",
                lambda: table.create_index(VECTOR_COLUMN, config=IvfFlat(distance_type="cosine")),
            )
        elapsed = time.perf_counter() - started
        logger.info("built IVF_FLAT index on %r (%d rows) in %.1f s", self.collection_name, rows, elapsed)

    async def aclose(self) -> None:
        """Forget the handles; the next call reopens. In-flight calls on other loops keep theirs until done."""
        with self._handles:
            self._table = None
            self._db = None
            self._fts_ready = False
            self._keyword_scores.forget()
        self._open_locks.pop_current()
        self._fts_locks.pop_current()
        self._search_slots.pop_current()
