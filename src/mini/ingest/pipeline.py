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

~580 lines: the run's stages share one `_Run`'s budget, counters and report, so they stay together here; what
needs none of that already moved out (`grouped` file reads, `vectors` embedding, `state` commits, `units`). The
next cut: the discover/read stage (`_worker`, `_submit`, the group scheduling, the Ray read hop) into its own module.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
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
from mini.ingest import chunking, grouped, state
from mini.ingest import units as units_
from mini.ingest.cache import CacheKey, EmbeddingCache
from mini.ingest.limits import ParseLimits
from mini.ingest.report import IngestIssue, IngestProgress, IngestReport
from mini.ingest.units import Unit
from mini.ingest.vectors import Vector, Vectors
from mini.stores.filters import Compare
from mini.types import Document

if TYPE_CHECKING:
    from mini.embeddings.base import EmbeddingModel
    from mini.ingest.netguard import FetchPolicy
    from mini.ingest.ray_executor import RayExecutor
    from mini.ingest.web import UrlFetcher
    from mini.stores.base import VectorStore

__all__ = ["IngestIssue", "IngestProgress", "IngestReport", "Ingestor"]

log = logging.getLogger("mini.ingest")

DEFAULT_CONCURRENCY = 8
DEFAULT_BATCH_SIZE = 64
DEFAULT_LOAD_CONCURRENCY = 16
# A commit is made when this many rows are ready, or when the oldest waited _WRITE_LINGER_S, or at the end.
# Few large commits matter on LanceDB: every commit adds a fragment and a version, and scans, merges and
# memory grow with their number (700 commits of 64 rows: each upsert 26 -> 58 ms, a lookup 330 ms).
_WRITE_ROWS = 2048
_WRITE_LINGER_S = 0.25

ProgressCallback = Callable[[IngestProgress], None]
# What `_prepare` finds: None (nothing to embed or write), else the vectors already known, by cache key.
Needed = dict[CacheKey, np.ndarray] | None


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
    - `executor`: "local" (threads), or "ray" / a `RayExecutor(address)`: files are read, parsed, chunked and
      (local model) embedded by Ray tasks; discovery, skipping and commits stay here (`mini.ingest.ray_executor`).
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
        executor: str | RayExecutor = "local",
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
        self.executor = _executor(executor)
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
        self.tokenizer: Any = None
        self.config_key = ""
        self.seen_origins: set[str] = set()
        self.budget = CountingBudget(ingestor.max_chunks_in_flight)
        self.vectors = Vectors(
            ingestor.embedding_model,
            ingestor.cache,
            self.report,
            batch_size=ingestor.batch_size,
            concurrency=ingestor.concurrency,
            progress=self.emit,
            timed=self.time,
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
        # Units still waiting for vectors, and whether workers may add more: when neither, every unit left is
        # in the writer, and its commit is sent at once instead of after the linger (250 ms on every run).
        self.awaiting_vectors = 0
        self.producing = True
        self.group_files = 1  # files per read hop, set once the units are known
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
        self.group_files = grouped.group_size(
            len(units), self.ing.load_concurrency, self.ing.max_chunks_in_flight
        )
        self.report.files_seen = self.files_total
        self.emit()
        if units:
            await self._setup()
            if self.ing.executor is not None:
                await self.ing.executor.start()
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
            f"tokens:{state.vector_space(embedder.name)}"  # an int8 variant has the float model's tokenizer
            if self.tokenizer is not None
            else f"chars:{chunking.CHARS_PER_TOKEN}"
        )
        self.vectors.key = state.embed_key(state.vector_space(embedder.name), embedder.dimension)
        self.config_key = state.config_key(self.ing.chunk_tokens, self.ing.overlap_tokens, sizing)
        if self.metadata:  # other metadata, other rows: a file given with new metadata is re-indexed
            self.config_key += units_.metadata_key(self.metadata)

    async def _process(self, units: list[Unit]) -> None:
        before = await self.committer.write_state()  # before the count: a write in between shows as a change
        empty = await self.store.backend.count() == 0
        self.committer.start(empty=empty, state=before)
        self.lookup = state.StoredLookup(self.store.backend, [u.origin for u in units], empty=empty)
        queue = iter(enumerate(units))
        try:
            # The batchers outlive the task group: on an error or cancellation, the group's tasks stop first,
            # then the batchers cancel their requests and commits in flight.
            async with self.writer, self.vectors.batcher, asyncio.TaskGroup() as group:
                workers = [
                    group.create_task(self._worker(queue, group))
                    for _ in range(min(self.ing.load_concurrency, len(units)))
                ]
                await asyncio.gather(*workers)
                self.vectors.batcher.close()  # every chunk is submitted: flush partial batches now
                self.producing = False
                self._flush_if_all_written()
                if self.unit_tasks:
                    await asyncio.gather(*self.unit_tasks)
        except BaseExceptionGroup as group_error:
            # Only fatal errors reach here (items catch their own): raise the first as itself.
            errors = [e for e in group_error.exceptions if not isinstance(e, asyncio.CancelledError)]
            raise (errors or group_error.exceptions)[0] from None

    async def _worker(self, queue: Any, group: asyncio.TaskGroup) -> None:
        size = self.group_files
        while batch := list(itertools.islice(queue, size)):
            while batch:
                if batch[0][1].kind == "file":
                    # Consecutive files share one thread hop (see `mini.ingest.grouped`).
                    files = list(itertools.takewhile(lambda item: item[1].kind == "file", batch))
                    done = await self._prepare_files(files)
                else:
                    done = [(batch[0][1], await self._guarded(self._prepare(*batch[0]), batch[0][1]))]
                del batch[: len(done)]
                for unit, needed in done:
                    if needed is not None:
                        await self._submit(unit, needed, group)

    async def _guarded(self, prepared: Awaitable[Needed], unit: Unit) -> Needed:
        """`prepared`'s result, or None after reporting the unit failed (fatal errors are raised)."""
        try:
            return await prepared
        except Exception as exc:
            if _fatal(exc):
                raise
            self.fail(unit.origin, exc)
            return None

    async def _submit(self, unit: Unit, needed: dict[CacheKey, np.ndarray], group: asyncio.TaskGroup) -> None:
        # Waiting here (with the file's chunks parsed) stops this worker from reading more files while the
        # pipeline is full: memory is bounded by the budget plus one group of files per worker.
        held = await self.budget.acquire(len(unit.chunks))
        try:
            futures = self.vectors.resolve(unit.chunks, needed)
        except BaseException:
            await self.budget.release(held)
            raise
        self.awaiting_vectors += 1
        task = group.create_task(self._finish(unit, futures, held))
        self.unit_tasks.add(task)
        task.add_done_callback(self.unit_tasks.discard)

    # -- per unit -------------------------------------------------------------------------------------------

    async def _prepare_files(self, files: list[tuple[int, Unit]]) -> list[tuple[Unit, Needed]]:
        """`_prepare` for consecutive file units, read and parsed in one thread hop; returns those done (a
        prefix: the hop stops once it holds `grouped.GROUP_CHARS` of text)."""
        assert self.lookup is not None
        for index, unit in files:
            unit.stored = await self.lookup.get(index)
        if self.ing.executor is not None:
            outcomes, read_s, parse_s = await self.ing.executor.read_files(
                [unit for _, unit in files], self._task_settings(), self.report, self.ing.cache
            )
        else:
            outcomes, read_s, parse_s = await asyncio.to_thread(self._read_files, [unit for _, unit in files])
        timings = self.report.timings_ms
        timings["read"] = round(timings.get("read", 0.0) + read_s * 1000.0, 3)
        timings["parse"] = round(timings.get("parse", 0.0) + parse_s * 1000.0, 3)
        done: list[tuple[Unit, Needed]] = []
        for (_, unit), outcome in zip(files, outcomes, strict=False):
            if outcome.error is not None:
                if _fatal(outcome.error):
                    raise outcome.error
                self.fail(unit.origin, outcome.error)
                needed = None
            elif outcome.unchanged:
                needed = self._unchanged(unit)
            else:
                needed = await self._guarded(self._chunked(unit, outcome.encoding), unit)
                if needed is not None and self.ing.executor is not None:
                    from mini.ingest.ray_executor import known_vectors

                    needed = known_vectors(outcome, needed, self.vectors.key, self.report)
            done.append((unit, needed))
        return done

    def _read_files(self, units: list[Unit]) -> tuple[list[grouped.FileOutcome], float, float]:
        """`grouped.read_files` with this run's settings (blocking: in a worker thread)."""
        return grouped.read_files(
            units,
            fingerprint=functools.partial(state.fingerprint, self.vectors.key, self.config_key),
            parse_limits=self.ing.parse_limits,
            chunk_tokens=self.ing.chunk_tokens,
            overlap_tokens=self.ing.overlap_tokens,
            tokenizer=self.tokenizer,
            metadata=self.metadata,
            max_chars=grouped.GROUP_CHARS,
        )

    def _task_settings(self) -> Any:
        """What the Ray tasks of this run need (`ray_executor.TaskSettings`)."""
        from mini.ingest.ray_executor import TaskSettings

        embedder = self.ing.embedding_model.embedder
        return TaskSettings(
            model=embedder.name,
            model_path=getattr(embedder, "_model_path", None),
            embed_key=self.vectors.key,
            config_key=self.config_key,
            chunk_tokens=self.ing.chunk_tokens,
            overlap_tokens=self.ing.overlap_tokens,
            local_model=self.tokenizer is not None,
            metadata=self.metadata,
            parse_limits=self.ing.parse_limits,
        )

    async def _prepare(self, index: int, unit: Unit) -> Needed:
        """Read, fingerprint, compare with the store, parse and chunk. None when there is nothing to embed or
        write (unchanged, or empty and already absent); else the vectors known from the store."""
        since = time.perf_counter()
        content_key, parse = await units_.load(unit, self._fetcher, self.ing.parse_limits)
        self.time("read", since)
        unit.fingerprint = state.fingerprint(self.vectors.key, self.config_key, content_key)
        assert self.lookup is not None
        unit.stored = await self.lookup.get(index)
        if unit.stored is not None and unit.stored.fingerprint == unit.fingerprint:
            return self._unchanged(unit)
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
        return await self._chunked(unit, encoding)

    def _unchanged(self, unit: Unit) -> Needed:
        """Counts a file skipped as unchanged; nothing to embed or write."""
        assert unit.stored is not None
        self.report.files_skipped += 1
        self.report.chunks_unchanged += len(unit.stored.ids)
        self.done_one()
        return None

    async def _chunked(self, unit: Unit, encoding: str | None) -> Needed:
        """The rest of `_prepare`, once the unit is parsed and chunked."""
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
        if unit.stored is None or not state.reusable(unit.stored, self.vectors.key):
            return {}
        stored = await state.stored_vectors(self.store.backend, unit.origin)
        return {(self.vectors.key, digest): vector for digest, vector in stored.items()}

    async def _fetcher(self) -> UrlFetcher:
        if self.fetcher is None:
            if self.ing.url_fetcher is not None:
                self.fetcher = self.ing.url_fetcher
            else:
                from mini.ingest.web import UrlFetcher

                self.fetcher, self.own_fetcher = UrlFetcher(policy=self.ing.fetch_policy), True
        return self.fetcher

    async def _finish(self, unit: Unit, parts: list[Vector], held: int) -> None:
        """Wait for the unit's vectors, then for its write; report the outcome."""
        awaiting = True
        try:
            try:
                vectors = [p if isinstance(p, np.ndarray) else await p for p in parts]
                parts.clear()  # a future per chunk, kept through the write otherwise (a large file: 10 MB)
                unit.records = units_.to_records(unit, vectors)
                unit.chunks = []  # the records hold the text and vectors now
                del vectors
                written = self.writer.submit(unit)
                awaiting = False
                self._vectors_done()
                await written
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
            if awaiting:
                self._vectors_done()
            unit.records = []
            await self.budget.release(held)

    def _vectors_done(self) -> None:
        self.awaiting_vectors -= 1
        self._flush_if_all_written()

    def _flush_if_all_written(self) -> None:
        """Once no unit can reach the writer any more, what it holds is the last commit: sent now."""
        if not self.producing and self.awaiting_vectors == 0:
            self.writer.flush()

    async def _prune(self, roots: list[Path], glob: str | None) -> None:
        since = time.perf_counter()
        pruned, removed = await state.prune(self.store.backend, roots, self.seen_origins, glob)
        self.report.files_pruned += len(pruned)
        self.report.chunks_removed += removed
        self.time("store", since)


def _executor(executor: str | RayExecutor) -> RayExecutor | None:
    if executor == "local":
        return None
    if executor == "ray":
        from mini.ingest.ray_executor import RayExecutor

        return RayExecutor()
    if isinstance(executor, str):
        raise ConfigurationError(f"executor must be 'local', 'ray' or a RayExecutor, not {executor!r}")
    return executor


def _trace_report(span: tracing.Span, report: IngestReport) -> None:
    for name in ("files_seen", "files_added", "files_updated", "files_skipped", "files_failed"):
        span.set_attribute(f"mini.{name}", getattr(report, name))
    for name in ("chunks_added", "chunks_embedded", "embedding_requests", "cache_hits"):
        span.set_attribute(f"mini.{name}", getattr(report, name))
    span.set_attribute("mini.interrupted", report.interrupted)
