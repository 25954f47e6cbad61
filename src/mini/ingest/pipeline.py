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
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mini import tracing
from mini._batching import CountingBudget, LingerBatcher
from mini._checks import at_least
from mini.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DimensionMismatchError,
)
from mini.ingest import chunking, state
from mini.ingest import units as units_
from mini.ingest.cache import CacheKey, EmbeddingCache
from mini.ingest.limits import ParseLimits
from mini.ingest.report import IngestIssue, IngestProgress, IngestReport
from mini.ingest.units import Unit
from mini.stores.filters import Compare
from mini.types import Document

if TYPE_CHECKING:
    from mini.embeddings.base import EmbeddingModel
    from mini.ingest.netguard import FetchPolicy
    from mini.ingest.web import UrlFetcher
    from mini.stores.base import VectorStore

__all__ = ["IngestIssue", "IngestProgress", "IngestReport", "Ingestor"]

log = logging.getLogger("mini.ingest")

DEFAULT_CONCURRENCY = 8
DEFAULT_BATCH_SIZE = 64
DEFAULT_LOAD_CONCURRENCY = 16
# A partial batch waits this long for more chunks before it is sent anyway (the producer may be slow).
_LINGER_S = 0.02
# A commit is made when this many rows are ready, or when the oldest waited _WRITE_LINGER_S, or at the end.
# Few large commits matter on LanceDB: every commit adds a fragment and a version, and scans, merges and
# memory grow with their number (700 commits of 64 rows: each upsert 26 -> 58 ms, a lookup 330 ms).
_WRITE_ROWS = 2048
_WRITE_LINGER_S = 0.25

ProgressCallback = Callable[[IngestProgress], None]


def _fatal(exc: BaseException) -> bool:
    """Errors that would fail every item the same way: stop the run instead of reporting each item."""
    if isinstance(exc, AuthenticationError | ConfigurationError | DimensionMismatchError):
        return True
    return isinstance(exc, BadRequestError) and exc.status_code == 404  # unknown model or endpoint


class Ingestor:
    """Indexes files, directories, URLs and `Document`s into a store; see the module docstring.

    - `concurrency`: embedding batches in flight (the provider's limiter may allow fewer).
    - `batch_size`: texts per embedding request, gathered across files.
    - `load_concurrency`: files read and parsed at once (in worker threads).
    - `cache`: vectors by (model, content hash); share one across runs to make repeated text free.
    - `url_fetcher`: fetches the http(s) URLs among the items; by default one made per run with
      `fetch_policy` (default `FetchPolicy.permissive()`; the server passes a refusing one).
    - `parse_limits`: how far one file may expand while parsed (`ParseLimits`); a file over one fails alone.
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
        fetch_policy: FetchPolicy | None = None,
        max_chunks_in_flight: int | None = None,
        parse_limits: ParseLimits | None = None,
    ) -> None:
        at_least(1, concurrency=concurrency, batch_size=batch_size, load_concurrency=load_concurrency)
        if url_fetcher is not None and fetch_policy is not None:
            # The fetcher has its own policy: silently ignoring this one could open what the caller closed.
            raise ConfigurationError("give url_fetcher or fetch_policy, not both (UrlFetcher(policy=...))")
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
        self.fetch_policy = fetch_policy
        self.parse_limits = parse_limits if parse_limits is not None else ParseLimits()
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
        metadata: Mapping[str, Any] | None = None,
    ) -> IngestReport:
        """Ingest `items`: paths (files or directories, walked recursively), http(s) URLs, or `Document`s.

        `metadata` goes on every chunk of every item (over the loaders' own keys; `source` and the pipeline's
        bookkeeping keys cannot be replaced); changing it re-indexes the files it was given with.

        One bad item never stops the others: it is listed in `report.failures` with the reason. Errors that
        would fail every item alike (bad credentials, unknown model, wrong vector size) are raised.
        With `prune=True`, stored files under the given directories that no longer exist (or no longer match
        `glob`) are deleted. Cancelling the run leaves every file either fully written or untouched.
        """
        run = _Run(self, progress, units_.extra_metadata(metadata))
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

    def __init__(
        self, ingestor: Ingestor, progress: ProgressCallback | None, metadata: dict[str, Any] | None = None
    ) -> None:
        self.ing = ingestor
        self.metadata = metadata
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
        self.budget = CountingBudget(ingestor.max_chunks_in_flight)
        # Texts from many files share embedding requests; a partial batch waits _LINGER_S for more texts (a slow
        # producer never stalls the pipeline, a fast one always fills its batches).
        self.batcher: LingerBatcher[str, np.ndarray] = LingerBatcher(
            self._embed_batch,
            max_size=ingestor.batch_size,
            linger=_LINGER_S,
            concurrency=ingestor.concurrency,
        )
        # Finished files share commits: one per _WRITE_ROWS ready rows, or once the oldest waited _WRITE_LINGER_S.
        self.committer = state.Committer(self.store.backend, fatal=_fatal, timed=self.time)
        self.writer: LingerBatcher[Unit, None] = LingerBatcher(
            self.committer.write,
            max_size=_WRITE_ROWS,
            linger=_WRITE_LINGER_S,
            size=lambda unit: len(unit.records),
        )
        self.lookup: state.StoredLookup | None = None
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
        planned = await units_.plan(items, glob)
        for item, exc in planned.failures:
            self.fail(item, exc)
        units, roots = planned.units, planned.roots
        self.seen_origins = {unit.origin for unit in units}
        self.time("discover", since)
        self.files_total = len(units) + self.report.files_failed
        self.report.files_seen = self.files_total
        self.emit()
        if units:
            await self._setup()
        try:
            await self._process(units)
        finally:
            if self.lookup is not None:
                self.lookup.cancel()
            if self.own_fetcher and self.fetcher is not None:
                await self.fetcher.aclose()
        await self.committer.finish()
        if prune and roots:
            await self._prune(roots, glob)

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
        self.embed_key = state.embed_key(embedder.name, embedder.dimension)
        self.config_key = state.config_key(self.ing.chunk_tokens, self.ing.overlap_tokens, sizing)
        if self.metadata:  # other metadata, other rows: a file given with new metadata is re-indexed
            self.config_key += units_.metadata_key(self.metadata)

    async def _process(self, units: list[Unit]) -> None:
        empty = await self.store.backend.count() == 0
        self.lookup = state.StoredLookup(self.store.backend, [u.origin for u in units], empty=empty)
        queue = iter(enumerate(units))
        try:
            # The batchers outlive the task group: on an error or cancellation, the group's tasks stop first,
            # then the batchers cancel their requests and commits in flight.
            async with self.writer, self.batcher, asyncio.TaskGroup() as group:
                workers = [
                    group.create_task(self._worker(queue, group))
                    for _ in range(min(self.ing.load_concurrency, len(units)))
                ]
                await asyncio.gather(*workers)
                self.batcher.close()  # every chunk is submitted: flush partial batches now
                if self.unit_tasks:
                    await asyncio.gather(*self.unit_tasks)
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

    async def _prepare(self, index: int, unit: Unit) -> dict[CacheKey, np.ndarray] | None:
        """Read, fingerprint, compare with the store, parse and chunk. None when there is nothing to embed or
        write (unchanged, or empty and already absent); else the vectors known from the store."""
        since = time.perf_counter()
        content_key, parse = await units_.load(unit, self._fetcher, self.ing.parse_limits)
        self.time("read", since)
        unit.fingerprint = state.fingerprint(self.embed_key, self.config_key, content_key)
        assert self.lookup is not None
        unit.stored = await self.lookup.get(index)
        if unit.stored is not None and unit.stored.fingerprint == unit.fingerprint:
            self.report.files_skipped += 1
            self.report.chunks_unchanged += len(unit.stored.ids)
            self.done_one()
            return None
        since = time.perf_counter()
        unit.chunks, encoding = await asyncio.to_thread(
            functools.partial(
                units_.parse_and_chunk,
                parse,
                metadata=self.metadata,
                chunk_tokens=self.ing.chunk_tokens,
                overlap_tokens=self.ing.overlap_tokens,
                tokenizer=self.tokenizer,
            )
        )
        self.time("parse", since)
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
        if unit.stored is None or not state.reusable(unit.stored, self.embed_key):
            return {}
        stored = await state.stored_vectors(self.store.backend, unit.origin)
        return {(self.embed_key, digest): vector for digest, vector in stored.items()}

    async def _fetcher(self) -> UrlFetcher:
        if self.fetcher is None:
            if self.ing.url_fetcher is not None:
                self.fetcher = self.ing.url_fetcher
            else:
                from mini.ingest.web import UrlFetcher

                self.fetcher, self.own_fetcher = UrlFetcher(policy=self.ing.fetch_policy), True
        return self.fetcher

    def _resolve_vectors(
        self, unit: Unit, known: dict[CacheKey, np.ndarray]
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
        self, unit: Unit, parts: list[np.ndarray | asyncio.Future[np.ndarray]], held: int
    ) -> None:
        """Wait for the unit's vectors, then for its write; report the outcome."""
        try:
            try:
                vectors = [p if isinstance(p, np.ndarray) else await p for p in parts]
                parts.clear()  # a future per chunk, kept through the write otherwise (a large file: 10 MB)
                unit.records = units_.to_records(unit, vectors)
                unit.chunks = []  # the records hold the text and vectors now
                del vectors
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
            elif state.already_stored(unit):
                self.report.files_skipped += 1  # another ingestor stored this very version first (Committer)
            else:
                self.report.files_updated += 1
            self.chunks_written += len(unit.records)
            self.done_one()
        finally:
            unit.records = []
            await self.budget.release(held)

    # -- stages shared by all units -------------------------------------------------------------------------

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

    async def _prune(self, roots: list[Path], glob: str | None) -> None:
        since = time.perf_counter()
        pruned, removed = await state.prune(self.store.backend, roots, self.seen_origins, glob)
        self.report.files_pruned += len(pruned)
        self.report.chunks_removed += removed
        self.time("store", since)


def _trace_report(span: tracing.Span, report: IngestReport) -> None:
    for name in ("files_seen", "files_added", "files_updated", "files_skipped", "files_failed"):
        span.set_attribute(f"mini.{name}", getattr(report, name))
    for name in ("chunks_added", "chunks_embedded", "embedding_requests", "cache_hits"):
        span.set_attribute(f"mini.{name}", getattr(report, name))
    span.set_attribute("mini.interrupted", report.interrupted)
