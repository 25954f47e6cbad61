"""`Ingestor`: a streaming pipeline from files, URLs and documents to stored chunk vectors.

    discover -> read (threads) -> look up what is stored (batched) -> parse + chunk (threads)
      -> vectors: from the cache, or embedded in batches of `batch_size` across files, `concurrency` in flight
      -> write: one atomic commit per group of finished files

Idempotent: every stored chunk carries its file's fingerprint (content hash + chunking settings + embedding
model), so an unchanged file is skipped before it is even parsed, and chunk ids derive from (source, content
hash). A changed file's rows are replaced in one commit (LanceDB: a merge that also deletes the file's rows it
no longer produces), so a search sees the old version or the new one, never half of each.
Resumable: a file's rows are written only once all of its chunks have vectors. After a crash every file is
complete or absent, and a re-run embeds only what is missing.
Bounded: at most `load_concurrency` files are read and parsed at once, and a chunk budget stops reading new
files while too many chunks wait for embedding or writing, so memory stays flat for any corpus size.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mini import tracing
from mini.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DimensionMismatchError,
    InvalidInputError,
    MiniError,
    UnsupportedFilterError,
)
from mini.ingest import chunking, loaders
from mini.ingest.cache import CacheKey, EmbeddingCache
from mini.ingest.report import IngestIssue, IngestProgress, IngestReport
from mini.stores.base import Record
from mini.stores.filters import Compare, In, parse_filter
from mini.types import Chunk, Document

if TYPE_CHECKING:
    from mini.embeddings.base import EmbeddingModel
    from mini.ingest.web import UrlFetcher
    from mini.stores.base import VectorStore

__all__ = ["IngestIssue", "IngestProgress", "IngestReport", "Ingestor"]

log = logging.getLogger("mini.ingest")

# Bump when loaders or chunking change their output for the same input: every file is then re-chunked once.
PIPELINE_VERSION = "1"
DEFAULT_CONCURRENCY = 8
DEFAULT_BATCH_SIZE = 64
DEFAULT_LOAD_CONCURRENCY = 16
# A partial batch waits this long for more chunks before it is sent anyway (the producer may be slow).
_LINGER_S = 0.02
# What the store holds is looked up for this many files at once (one scan each, read ahead of the workers).
_LOOKUP_WINDOW = 256
# A commit is made when this many rows are ready, or when the oldest waited _WRITE_LINGER_S, or at the end.
# Few large commits matter on LanceDB: every commit adds a fragment and a version, and scans, merges and
# memory grow with their number (700 commits of 64 rows: each upsert 26 -> 58 ms, a lookup 330 ms).
_WRITE_ROWS = 2048
_WRITE_LINGER_S = 0.25
# Compact the table after this many commits in a run (LanceDB; also builds its vector index when large).
_COMPACT_EVERY = 32

ProgressCallback = Callable[[IngestProgress], None]


def _fatal(exc: BaseException) -> bool:
    """Errors that would fail every item the same way: stop the run instead of reporting each item."""
    if isinstance(exc, AuthenticationError | ConfigurationError | DimensionMismatchError):
        return True
    return isinstance(exc, BadRequestError) and exc.status_code == 404  # unknown model or endpoint


def _short_hash(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:12]


@dataclass(slots=True)
class _Stored:
    """What the store holds for one origin: its fingerprint (None if its rows disagree) and row ids."""

    fingerprint: str | None
    ids: set[str]


@dataclass(eq=False)
class _Unit:
    """One thing ingested as a whole: a file, a URL, or in-memory documents sharing a source."""

    origin: str
    kind: Literal["file", "url", "documents"]
    path: Path | None = None
    url: str = ""
    documents: list[Document] | None = None
    fingerprint: str = ""
    stored: _Stored | None = None
    chunks: list[Chunk] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)


class _Budget:
    """A counting budget of chunks in flight; asking for more than the whole budget takes all of it."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.free = capacity
        self._changed = asyncio.Condition()

    async def acquire(self, amount: int) -> int:
        amount = min(amount, self.capacity)
        async with self._changed:
            await self._changed.wait_for(lambda: self.free >= amount)
            self.free -= amount
        return amount

    async def release(self, amount: int) -> None:
        async with self._changed:
            self.free += amount
            self._changed.notify_all()


class _EmbedBatcher:
    """Collects texts from many files into batches of `batch_size`, at most `concurrency` in flight.

    A partial batch is sent when it has waited `linger` seconds or when no more texts will come, so a slow
    producer never stalls the pipeline and a fast one always fills its batches.
    """

    def __init__(
        self,
        send: Callable[[list[str]], Awaitable[list[np.ndarray | BaseException]]],
        *,
        batch_size: int,
        concurrency: int,
        linger: float = _LINGER_S,
    ) -> None:
        self._send = send
        self.batch_size = batch_size
        self._slots = asyncio.Semaphore(concurrency)
        self._linger = linger
        self._pending: list[tuple[str, asyncio.Future[np.ndarray]]] = []
        self._ready = asyncio.Event()  # a full batch is pending, or the input has ended
        self._any = asyncio.Event()  # something is pending
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, text: str) -> asyncio.Future[np.ndarray]:
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._pending.append((text, future))
        self._any.set()
        if len(self._pending) >= self.batch_size:
            self._ready.set()
        return future

    def close(self) -> None:
        """No more texts will be submitted: send what is pending without lingering."""
        self._closed = True
        self._ready.set()
        self._any.set()

    async def run(self) -> None:
        try:
            while True:
                if not self._pending:
                    if self._closed:
                        break
                    self._any.clear()
                    await self._any.wait()
                    continue
                if not self._ready.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._ready.wait(), self._linger)
                await self._slots.acquire()
                # Whatever accumulated while waiting for a slot joins this batch: full batches under load.
                live = [(t, f) for t, f in self._pending if not f.done()]
                batch, self._pending = live[: self.batch_size], live[self.batch_size :]
                if len(self._pending) < self.batch_size and not self._closed:
                    self._ready.clear()
                if not batch:
                    self._slots.release()
                    continue
                task = asyncio.get_running_loop().create_task(self._run_batch(batch))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if self._tasks:
                await asyncio.gather(*self._tasks)
        finally:
            for task in self._tasks:
                task.cancel()
            for _, future in self._pending:
                future.cancel()

    async def _run_batch(self, batch: list[tuple[str, asyncio.Future[np.ndarray]]]) -> None:
        try:
            try:
                results: list[np.ndarray | BaseException] = await self._send([t for t, _ in batch])
            except Exception as exc:
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        finally:
            self._slots.release()


class _Writer:
    """Writes finished files: one commit per `_WRITE_ROWS` ready rows, or after `_WRITE_LINGER_S`."""

    def __init__(self, write: Callable[[list[_Unit]], Awaitable[list[BaseException | None]]]) -> None:
        self._write = write
        self._queue: list[tuple[_Unit, asyncio.Future[None]]] = []
        self._rows = 0
        self._any = asyncio.Event()
        self._full = asyncio.Event()  # a commit's worth of rows is ready, or the input has ended
        self._closed = False

    async def submit(self, unit: _Unit) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((unit, future))
        self._rows += len(unit.records)
        self._any.set()
        if self._rows >= _WRITE_ROWS:
            self._full.set()
        await future

    def close(self) -> None:
        self._closed = True
        self._any.set()
        self._full.set()

    async def run(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self._closed:
                        return
                    self._any.clear()
                    await self._any.wait()
                    continue
                if not self._full.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), _WRITE_LINGER_S)
                batch: list[tuple[_Unit, asyncio.Future[None]]] = []
                rows = 0
                while self._queue and (not batch or rows + len(self._queue[0][0].records) <= _WRITE_ROWS):
                    item = self._queue.pop(0)
                    batch.append(item)
                    rows += len(item[0].records)
                self._rows -= rows
                if self._rows < _WRITE_ROWS and not self._closed:
                    self._full.clear()
                outcomes = await self._write([unit for unit, _ in batch])
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if outcome is None:
                        future.set_result(None)
                    else:
                        future.set_exception(outcome)
        finally:
            for _, future in self._queue:
                future.cancel()


class Ingestor:
    """Indexes files, directories, URLs and `Document`s into a store; see the module docstring.

    - `concurrency`: embedding batches in flight (the provider's limiter may allow fewer).
    - `batch_size`: texts per embedding request, gathered across files.
    - `load_concurrency`: files read and parsed at once (in worker threads).
    - `cache`: vectors by (model, content hash); share one across runs to make repeated text free.
    """

    def __init__(
        self,
        store: VectorStore,
        embedding_model: EmbeddingModel,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        batch_size: int = DEFAULT_BATCH_SIZE,
        load_concurrency: int = DEFAULT_LOAD_CONCURRENCY,
        chunk_tokens: int = chunking.DEFAULT_CHUNK_TOKENS,
        overlap_tokens: int = chunking.DEFAULT_OVERLAP_TOKENS,
        cache: EmbeddingCache | None = None,
        url_fetcher: UrlFetcher | None = None,
        max_chunks_in_flight: int | None = None,
    ) -> None:
        for name, value in (
            ("concurrency", concurrency),
            ("batch_size", batch_size),
            ("load_concurrency", load_concurrency),
        ):
            if value < 1:
                raise InvalidInputError(f"{name} must be >= 1, got {value}")
        chunking.check_sizes(chunk_tokens, overlap_tokens)
        self.store = store
        self.embedding_model = embedding_model
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.load_concurrency = load_concurrency
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self.cache = cache if cache is not None else EmbeddingCache()
        self.url_fetcher = url_fetcher
        # Enough chunks to keep every embedding slot busy several times over, and no more.
        # (At least two commits' worth, so the writer never waits on rows the budget holds back.)
        self.max_chunks_in_flight = max_chunks_in_flight or max(2 * _WRITE_ROWS, 4 * concurrency * batch_size)
        # The report of the current (or last) run, live while it runs: after an interruption it says what
        # was finished.
        self.report: IngestReport | None = None

    async def run(
        self,
        items: Sequence[str | Path | Document],
        *,
        glob: str | None = None,
        prune: bool = False,
        progress: ProgressCallback | None = None,
    ) -> IngestReport:
        """Ingest `items`: paths (files or directories, walked recursively), http(s) URLs, or `Document`s.

        One bad item never stops the others: it is listed in `report.failures` with the reason. Errors that
        would fail every item alike (bad credentials, unknown model, wrong vector size) are raised.
        With `prune=True`, stored files under the given directories that no longer exist (or no longer match
        `glob`) are deleted. Cancelling the run leaves every file either fully written or untouched.
        """
        run = _Run(self, progress)
        self.report = run.report
        # Every stage task is started inside this span, so batches and commits are its children.
        attributes = {"mini.batch_size": self.batch_size, "mini.concurrency": self.concurrency}
        with tracing.span("mini.ingest", attributes) as span:
            try:
                await run.execute(items, glob=glob, prune=prune)
            except asyncio.CancelledError:
                run.report.interrupted = True
                raise
            finally:
                run.finish()
                if span.is_recording():
                    _trace_report(span, run.report)
        return run.report


class _Run:
    """The state of one `Ingestor.run`: counters, in-flight embeddings, and the stage tasks."""

    def __init__(self, ingestor: Ingestor, progress: ProgressCallback | None) -> None:
        self.ing = ingestor
        self.store = ingestor.store
        self.report = IngestReport()
        self.progress = progress
        self.started = time.perf_counter()
        self.files_total: int | None = None
        self.files_done = 0
        self.chunks_total = 0
        self.chunks_written = 0
        self.inflight: dict[CacheKey, asyncio.Future[np.ndarray]] = {}
        self.tokenizer: Any = None
        self.embed_key = ""
        self.config_key = ""
        self.seen_origins: set[str] = set()
        self.budget = _Budget(ingestor.max_chunks_in_flight)
        self.batcher = _EmbedBatcher(
            self._embed_batch, batch_size=ingestor.batch_size, concurrency=ingestor.concurrency
        )
        self.writer = _Writer(self._write)
        self.units: list[_Unit] = []
        self.lookups: dict[int, asyncio.Task[dict[str, _Stored]]] = {}
        self.store_was_empty = False
        self.commits = 0
        self.unit_tasks: set[asyncio.Task[None]] = set()
        self.fetcher: UrlFetcher | None = None
        self.own_fetcher = False

    # -- bookkeeping ----------------------------------------------------------------------------------------

    def emit(self) -> None:
        if self.progress is None:
            return
        r = self.report
        self.progress(
            IngestProgress(
                files_total=self.files_total,
                files_done=self.files_done,
                chunks_total=self.chunks_total,
                chunks_embedded=r.chunks_embedded,
                chunks_written=self.chunks_written,
                embedding_requests=r.embedding_requests,
                files_failed=r.files_failed,
            )
        )

    def time(self, stage: str, since: float) -> None:
        timings = self.report.timings_ms
        timings[stage] = round(timings.get(stage, 0.0) + (time.perf_counter() - since) * 1000.0, 3)

    def fail(self, origin: str, exc: BaseException) -> None:
        self.report.files_failed += 1
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        self.report.failures.append(IngestIssue(origin, reason, type(exc).__name__))
        log.warning("ingest failed for %s: %s", origin, reason)
        self.done_one()

    def warn(self, origin: str, reason: str) -> None:
        self.report.warnings.append(IngestIssue(origin, reason, "warning"))
        log.info("%s: %s", origin, reason)

    def done_one(self) -> None:
        self.files_done += 1
        self.emit()

    def finish(self) -> None:
        self.report.timings_ms["total"] = round((time.perf_counter() - self.started) * 1000.0, 3)
        self.emit()

    # -- the run --------------------------------------------------------------------------------------------

    async def execute(self, items: Sequence[str | Path | Document], *, glob: str | None, prune: bool) -> None:
        since = time.perf_counter()
        units, roots = await self._plan(items, glob)
        self.time("discover", since)
        self.files_total = len(units) + self.report.files_failed
        self.report.files_seen = self.files_total
        self.emit()
        if units:
            await self._setup()
        try:
            await self._process(units)
        finally:
            for lookup in self.lookups.values():
                lookup.cancel()
            if self.own_fetcher and self.fetcher is not None:
                await self.fetcher.aclose()
        if self.commits >= 4 and self.commits % _COMPACT_EVERY:
            await self._compact()  # many small writes make later searches slower: merge them now
        if prune and roots:
            await self._prune(roots, glob)

    async def _plan(
        self, items: Sequence[str | Path | Document], glob: str | None
    ) -> tuple[list[_Unit], list[Path]]:
        from mini.ingest.web import is_url, redact_url

        if isinstance(items, str | Path | Document):
            raise InvalidInputError("items must be a list of paths, URLs or Documents, not a single one")
        units: dict[str, _Unit] = {}
        roots: list[Path] = []
        for item in items:
            if isinstance(item, Document):
                unit = units.setdefault(item.source, _Unit(item.source, "documents", documents=[]))
                if unit.documents is None:  # the same name as a file or URL given in this run
                    raise InvalidInputError(f"a Document's source {item.source!r} is also a path or URL")
                unit.documents.append(item)
            elif is_url(item):
                # Credentials in a URL never become a source, metadata or a log line.
                origin = redact_url(str(item))
                units.setdefault(origin, _Unit(origin, "url", url=str(item)))
            elif isinstance(item, str | Path):
                try:
                    found, root = await asyncio.to_thread(_discover, item, glob)
                except MiniError as exc:
                    self.fail(str(item), exc)
                    continue
                if root is not None:
                    roots.append(root)
                for path in found:
                    origin = path.as_posix()
                    units.setdefault(origin, _Unit(origin, "file", path=path))
            else:
                raise InvalidInputError(f"cannot ingest {type(item).__name__}: give paths, URLs or Documents")
        self.seen_origins = set(units)
        return list(units.values()), roots

    async def _setup(self) -> None:
        """Chunk sizing and the fingerprint keys, decided once per run."""
        embedder = self.ing.embedding_model.embedder
        load = getattr(embedder, "chunk_tokenizer", None)
        # Local models truncate at a few hundred tokens, so their chunks are sized with their own tokenizer;
        # remote models accept thousands, and character sizing is ~100x cheaper (no tokenizer pass).
        self.tokenizer = await asyncio.to_thread(load) if callable(load) else None
        sizing = (
            f"tokens:{embedder.name}" if self.tokenizer is not None else f"chars:{chunking.CHARS_PER_TOKEN}"
        )
        self.embed_key = _short_hash(embedder.name, str(embedder.dimension or ""))
        self.config_key = _short_hash(
            PIPELINE_VERSION, str(self.ing.chunk_tokens), str(self.ing.overlap_tokens), sizing
        )

    async def _process(self, units: list[_Unit]) -> None:
        self.units = units
        # A store with no rows at the start holds nothing of this run's files: no lookups at all (the first
        # ingestion of a big corpus would otherwise scan a growing table once per window).
        self.store_was_empty = await self.store.backend.count() == 0
        queue = iter(enumerate(units))
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.batcher.run())
                group.create_task(self.writer.run())
                workers = [
                    group.create_task(self._worker(queue, group))
                    for _ in range(min(self.ing.load_concurrency, len(units)))
                ]
                await asyncio.gather(*workers)
                self.batcher.close()  # every chunk is submitted: flush partial batches now
                if self.unit_tasks:
                    await asyncio.gather(*self.unit_tasks)
                self.writer.close()
        except BaseExceptionGroup as group_error:
            # Only fatal errors reach here (items catch their own): raise the first as itself.
            errors = [e for e in group_error.exceptions if not isinstance(e, asyncio.CancelledError)]
            raise (errors or group_error.exceptions)[0] from None

    async def _worker(self, queue: Any, group: asyncio.TaskGroup) -> None:
        for index, unit in queue:
            try:
                needed = await self._prepare(index, unit)
            except Exception as exc:
                if _fatal(exc):
                    raise
                self.fail(unit.origin, exc)
                continue
            if needed is None:
                continue
            # Waiting here (with the file's chunks parsed) stops this worker from reading more files while the
            # pipeline is full: memory is bounded by the budget plus one file per worker.
            held = await self.budget.acquire(len(unit.chunks))
            try:
                futures = self._resolve_vectors(unit, needed)
            except BaseException:
                await self.budget.release(held)
                raise
            task = group.create_task(self._finish(unit, futures, held))
            self.unit_tasks.add(task)
            task.add_done_callback(self.unit_tasks.discard)

    # -- per unit -------------------------------------------------------------------------------------------

    async def _prepare(self, index: int, unit: _Unit) -> dict[CacheKey, np.ndarray] | None:
        """Read, fingerprint, compare with the store, parse and chunk. None when there is nothing to embed or
        write (unchanged, or empty and already absent); else the vectors known from the store."""
        since = time.perf_counter()
        content_key, parse = await self._load(unit)
        self.time("read", since)
        unit.fingerprint = f"{self.embed_key}.{self.config_key}.{content_key}"
        unit.stored = await self._stored(index)
        if unit.stored is not None and unit.stored.fingerprint == unit.fingerprint:
            self.report.files_skipped += 1
            self.report.chunks_unchanged += len(unit.stored.ids)
            self.done_one()
            return None
        since = time.perf_counter()
        documents, unit.chunks = await asyncio.to_thread(self._parse_and_chunk, parse)
        self.time("parse", since)
        for document in documents[:1]:
            encoding = document.metadata.get("encoding")
            if encoding:
                self.warn(unit.origin, f"not UTF-8; decoded as {encoding}")
        if not unit.chunks:
            if unit.stored is None:
                self.warn(unit.origin, "empty: no text to index")
                self.report.files_skipped += 1
                self.done_one()
                return None
            # The file lost all its text: its rows go, and it counts as updated.
            removed = await self.store.backend.delete(filter=Compare("origin", "eq", unit.origin))
            self.warn(unit.origin, "empty: no text to index; its previous chunks were removed")
            self.report.files_updated += 1
            self.report.chunks_removed += removed
            self.done_one()
            return None
        self.chunks_total += len(unit.chunks)
        known: dict[CacheKey, np.ndarray] = {}
        if unit.stored is not None and self._reusable(unit.stored):
            # An edited file: its unchanged chunks keep their stored vectors (read back, not re-embedded).
            rows = await self.store.backend.get(
                filter=Compare("origin", "eq", unit.origin), include_vectors=True
            )
            for row in rows:
                digest = row.metadata.get("content_hash")
                if isinstance(digest, str) and row.vector is not None:
                    known[(self.embed_key, digest)] = np.asarray(row.vector, dtype=np.float32)
        return known

    def _reusable(self, stored: _Stored) -> bool:
        """Stored vectors can be reused only if the same embedding model made them."""
        return stored.fingerprint is not None and stored.fingerprint.split(".", 1)[0] == self.embed_key

    async def _load(self, unit: _Unit) -> tuple[str, Callable[[], list[Document]]]:
        """The unit's content hash and a blocking function that parses it into documents."""
        if unit.kind == "file":
            assert unit.path is not None
            path = unit.path
            file_type = loaders.file_type_of(path)
            data = await asyncio.to_thread(loaders.read_file, path)
            digest = await asyncio.to_thread(_digest, data) if len(data) > 1 << 20 else _digest(data)
            return digest, lambda: loaders.parse_bytes(unit.origin, data, file_type, filename=path.name)
        if unit.kind == "url":
            fetcher = await self._fetcher()
            fetched = await fetcher.fetch(unit.url)
            digest = _digest(fetched.content_type.encode() + b"\x00" + fetched.data)
            return digest, lambda: loaders.parse_bytes(unit.origin, fetched.data, fetched.file_type)
        documents = list(unit.documents or [])
        payload = json.dumps(
            [[d.text, d.metadata] for d in documents], sort_keys=True, default=str, ensure_ascii=False
        )
        return _digest(payload.encode()), lambda: documents

    async def _fetcher(self) -> UrlFetcher:
        if self.fetcher is None:
            if self.ing.url_fetcher is not None:
                self.fetcher = self.ing.url_fetcher
            else:
                from mini.ingest.web import UrlFetcher

                self.fetcher, self.own_fetcher = UrlFetcher(), True
        return self.fetcher

    def _parse_and_chunk(self, parse: Callable[[], list[Document]]) -> tuple[list[Document], list[Chunk]]:
        """Runs in a worker thread: parsing and splitting are CPU work."""
        documents = parse()
        chunks = chunking.chunk_documents(
            documents,
            chunk_tokens=self.ing.chunk_tokens,
            overlap_tokens=self.ing.overlap_tokens,
            tokenizer=self.tokenizer,
        )
        return documents, chunks

    def _resolve_vectors(
        self, unit: _Unit, known: dict[CacheKey, np.ndarray]
    ) -> list[np.ndarray | asyncio.Future[np.ndarray]]:
        """Each chunk's vector, or a future for it: from the file's stored rows, the cache, an embedding already
        in flight for the same text, or a new request."""
        out: list[np.ndarray | asyncio.Future[np.ndarray]] = []
        for chunk in unit.chunks:
            key = (self.embed_key, chunk.content_hash)
            vector = known.get(key)
            if vector is None:
                vector = self.ing.cache.get(key)
            if vector is not None:
                self.report.cache_hits += 1
                out.append(vector)
                continue
            future = self.inflight.get(key)
            if future is None:
                future = self.batcher.submit(chunk.text)
                self.inflight[key] = future
                future.add_done_callback(functools.partial(self._embedded, key))
            else:
                self.report.cache_hits += 1
            out.append(future)
        return out

    def _embedded(self, key: CacheKey, future: asyncio.Future[np.ndarray]) -> None:
        self.inflight.pop(key, None)
        if not future.cancelled() and future.exception() is None:
            self.ing.cache.put(key, future.result())

    async def _finish(
        self, unit: _Unit, parts: list[np.ndarray | asyncio.Future[np.ndarray]], held: int
    ) -> None:
        """Wait for the unit's vectors, then for its write; report the outcome."""
        try:
            try:
                vectors = [p if isinstance(p, np.ndarray) else await p for p in parts]
                unit.records = self._records(unit, vectors)
                unit.chunks = []  # the records hold the text now
                await self.writer.submit(unit)
            except Exception as exc:
                if _fatal(exc):
                    raise
                self.fail(unit.origin, exc)
                return
            new_ids = {r.id for r in unit.records}
            old_ids = unit.stored.ids if unit.stored is not None else set()
            self.report.chunks_added += len(new_ids - old_ids)
            self.report.chunks_removed += len(old_ids - new_ids)
            self.report.chunks_unchanged += len(new_ids & old_ids)
            if unit.stored is None:
                self.report.files_added += 1
            else:
                self.report.files_updated += 1
            self.chunks_written += len(unit.records)
            self.done_one()
        finally:
            unit.records = []
            await self.budget.release(held)

    def _records(self, unit: _Unit, vectors: list[np.ndarray]) -> list[Record]:
        extra = {"origin": unit.origin, "fingerprint": unit.fingerprint}
        return [
            Record(chunk.id, vector, chunk.text, {**chunk.store_metadata(), **extra})
            for chunk, vector in zip(unit.chunks, vectors, strict=True)
        ]

    # -- stages shared by all units -------------------------------------------------------------------------

    async def _stored(self, index: int) -> _Stored | None:
        """What the store holds for unit `index`, looked up with its window of `_LOOKUP_WINDOW` files; the next
        window's lookup starts now, so it is ready when the workers get there."""
        if self.store_was_empty:
            return None
        window = index // _LOOKUP_WINDOW
        for w in (window, window + 1):
            if w not in self.lookups and w * _LOOKUP_WINDOW < len(self.units):
                origins = [u.origin for u in self.units[w * _LOOKUP_WINDOW : (w + 1) * _LOOKUP_WINDOW]]
                self.lookups[w] = asyncio.get_running_loop().create_task(self._lookup(origins))
        self.lookups.pop(window - 2, None)  # windows behind every worker are done with
        found = await asyncio.shield(self.lookups[window])
        return found.get(self.units[index].origin)

    async def _lookup(self, origins: list[str]) -> dict[str, _Stored]:
        rows = await self.store.backend.get(filter=In("origin", tuple(origins)))
        found: dict[str, _Stored] = {}
        for row in rows:
            origin = row.metadata.get("origin")
            if not isinstance(origin, str):
                continue
            fingerprint = row.metadata.get("fingerprint")
            stored = found.get(origin)
            if stored is None:
                found[origin] = _Stored(fingerprint if isinstance(fingerprint, str) else None, {row.id})
            else:
                stored.ids.add(row.id)
                if stored.fingerprint != fingerprint:
                    stored.fingerprint = None  # mixed versions (written by hand?): re-ingest it
        return found

    async def _embed_batch(self, texts: list[str]) -> list[np.ndarray | BaseException]:
        """One request. A rejected batch is retried text by text, so one bad text fails only its own file."""
        from mini.embeddings.base import embed_splitting_rejected

        since = time.perf_counter()
        # The embedder itself: the facade's micro-batching is for small concurrent calls, not batches.
        embedder = self.ing.embedding_model.embedder
        try:
            with tracing.span("mini.ingest.embed_batch", {"mini.batch_size": len(texts)}) as span:
                tracing.set_model_call(span, embedder.name, operation="embeddings")
                results, requests = await embed_splitting_rejected(embedder, texts, input_type="document")
                span.set_attribute("mini.requests", requests)
        except BaseException:
            self.report.embedding_requests += 1  # a failed request was still made
            raise
        finally:
            self.time("embed", since)
        self.report.embedding_requests += requests
        self.report.chunks_embedded += sum(not isinstance(r, BaseException) for r in results)
        self.emit()
        return results

    async def _write(self, units: list[_Unit]) -> list[BaseException | None]:
        """One commit for several finished files; if it fails, each file is retried alone so one bad file
        (say, metadata that cannot be stored) fails only itself."""
        since = time.perf_counter()
        try:
            try:
                await self._commit(units)
                return [None] * len(units)
            except Exception as exc:
                if _fatal(exc) or len(units) == 1:
                    return [exc] * len(units)
            outcomes: list[BaseException | None] = []
            for unit in units:
                try:
                    await self._commit([unit])
                    outcomes.append(None)
                except Exception as exc:
                    outcomes.append(exc)
            return outcomes
        finally:
            self.time("store", since)

    async def _commit(self, units: list[_Unit]) -> None:
        records = [r for unit in units for r in unit.records]
        replaced = tuple(unit.origin for unit in units if unit.stored is not None)
        attributes = {"mini.files": len(units), "mini.rows": len(records), "mini.replaced": len(replaced)}
        with tracing.span("mini.ingest.write", attributes):
            if replaced:
                # Rows of these files that the new versions do not produce are deleted in the same commit.
                await self.store.backend.replace(records, scope=In("origin", replaced))
            else:
                await self.store.backend.upsert(records)
        self.commits += 1
        if self.commits % _COMPACT_EVERY == 0:
            await self._compact()

    async def _compact(self) -> None:
        optimize = getattr(self.store.backend, "optimize", None)
        if callable(optimize):
            since = time.perf_counter()
            await optimize()
            self.time("compact", since)

    async def _prune(self, roots: list[Path], glob: str | None) -> None:
        since = time.perf_counter()
        for root in roots:
            prefix = root.as_posix().rstrip("/") + "/"
            # Origins under the root: the strings from "root/" up to (not including) "root0" ('0' follows '/').
            spec = {"origin": {"$gte": prefix, "$lt": prefix[:-1] + "0"}}
            try:
                rows = await self.store.backend.get(filter=parse_filter(spec))
            except UnsupportedFilterError:  # no string ranges (Qdrant): read every row's origin instead
                rows = await self.store.backend.get()
            stored = {
                o for r in rows if isinstance(o := r.metadata.get("origin"), str) and o.startswith(prefix)
            }
            stale = sorted(
                o
                for o in stored - self.seen_origins
                if not glob or PurePosixPath(o[len(prefix) :]).match(glob)
            )
            if stale:
                self.report.chunks_removed += await self.store.backend.delete(
                    filter=In("origin", tuple(stale))
                )
                self.report.files_pruned += len(stale)
                log.info("pruned %d file(s) under %s that no longer exist", len(stale), root)
        self.time("store", since)


def _discover(item: str | Path, glob: str | None) -> tuple[list[Path], Path | None]:
    """The files an item stands for, and the item itself if it is a directory (a root for pruning)."""
    root = Path(os.path.abspath(item))
    return loaders.discover([item], glob=glob), root if root.is_dir() else None


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def _trace_report(span: tracing.Span, report: IngestReport) -> None:
    for name in ("files_seen", "files_added", "files_updated", "files_skipped", "files_failed"):
        span.set_attribute(f"mini.{name}", getattr(report, name))
    for name in ("chunks_added", "chunks_embedded", "embedding_requests", "cache_hits"):
        span.set_attribute(f"mini.{name}", getattr(report, name))
    span.set_attribute("mini.interrupted", report.interrupted)
