"""`Ingestor`: files -> documents -> chunks -> embeddings -> store, concurrent per file, idempotent, reported.

Idempotency comes from chunk ids derived from (source, content hash): chunks already in the store are never
embedded again, and chunks of a source that are no longer produced (the file changed) are deleted.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mini._tasks import gather_all
from mini.errors import MiniError
from mini.ingest import chunking, loaders
from mini.types import Chunk, Document

if TYPE_CHECKING:
    from mini.embeddings.base import EmbeddingModel
    from mini.stores.base import VectorStore

log = logging.getLogger("mini.ingest")

_DELETE_GROUP = 500  # sources per stale-chunk delete, keeping each filter expression a reasonable size


@dataclass(frozen=True, slots=True)
class IngestFailure:
    path: str
    reason: str
    error_type: str


@dataclass
class IngestReport:
    """What an ingestion run did, per file; failures are listed, never dropped."""

    files_seen: int = 0
    files_added: int = 0
    files_updated: int = 0
    files_skipped: int = 0
    files_failed: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_unchanged: int = 0
    failures: list[IngestFailure] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.files_failed == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@functools.cache
def _chunk_tokenizer() -> Any:
    """The bundled model's tokenizer, so chunk sizes are real tokens; None (character sizing) if absent."""
    try:
        from mini.embeddings.local_onnx import resolve_model_dir

        return chunking.load_tokenizer(resolve_model_dir(None))
    except MiniError:
        log.debug("bundled tokenizer not found; chunk sizes are estimated from characters")
        return None


class Ingestor:
    """Indexes files and documents into a store; at most `concurrency` files are in progress at once."""

    def __init__(
        self,
        store: VectorStore,
        embedding_model: EmbeddingModel,
        *,
        concurrency: int = 4,
        chunk_tokens: int = 250,
        overlap_tokens: int = 40,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.store = store
        self.embedding_model = embedding_model
        self.concurrency = concurrency
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens

    async def run(self, items: Sequence[str | Path | Document], *, glob: str | None = None) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport()
        documents = [item for item in items if isinstance(item, Document)]
        paths = [item for item in items if not isinstance(item, Document)]
        files: list[Path] = []
        for path in paths:
            try:
                files.extend(await asyncio.to_thread(loaders.discover, [path], glob=glob))
            except MiniError as exc:
                self._fail(report, str(path), exc)
        files = list(dict.fromkeys(files))
        jobs = [self._ingest_file(report, path) for path in files]
        if documents:
            jobs.append(self._ingest_documents(report, "<documents>", documents))
        await gather_all(jobs, limit=self.concurrency)
        report.timings_ms["total"] = round((time.perf_counter() - started) * 1000.0, 3)
        return report

    def _fail(self, report: IngestReport, path: str, exc: BaseException) -> None:
        report.files_seen += 1
        report.files_failed += 1
        reason = getattr(exc, "reason", None) or str(exc)
        report.failures.append(IngestFailure(path, reason, type(exc).__name__))
        log.warning("ingest failed for %s: %s", path, reason)

    def _time(self, report: IngestReport, stage: str, since: float) -> None:
        report.timings_ms[stage] = round(
            report.timings_ms.get(stage, 0.0) + (time.perf_counter() - since) * 1000.0, 3
        )

    async def _ingest_file(self, report: IngestReport, path: Path) -> None:
        try:
            since = time.perf_counter()
            documents = await loaders.load_file_async(path)
            self._time(report, "load", since)
        except Exception as exc:  # one bad file never stops the batch
            self._fail(report, str(path), exc)
            return
        await self._ingest_documents(report, str(path), documents)

    async def _ingest_documents(self, report: IngestReport, label: str, documents: list[Document]) -> None:
        try:
            status, added, removed, unchanged = await self._sync_documents(report, documents)
        except Exception as exc:
            self._fail(report, label, exc)
            return
        report.files_seen += 1
        report.chunks_added += added
        report.chunks_removed += removed
        report.chunks_unchanged += unchanged
        if status == "added":
            report.files_added += 1
        elif status == "updated":
            report.files_updated += 1
        else:
            report.files_skipped += 1

    def _chunk(self, documents: list[Document]) -> list[Chunk]:
        """Runs in a worker thread: loading the tokenizer and splitting are CPU and disk work."""
        return chunking.chunk_documents(
            documents,
            chunk_tokens=self.chunk_tokens,
            overlap_tokens=self.overlap_tokens,
            tokenizer=_chunk_tokenizer(),
        )

    async def _sync_documents(
        self, report: IngestReport, documents: list[Document]
    ) -> tuple[str, int, int, int]:
        """Make the store hold exactly these documents' chunks for their sources; returns (status, counts)."""
        since = time.perf_counter()
        chunks = await asyncio.to_thread(self._chunk, documents)
        self._time(report, "chunk", since)
        sources = sorted({d.source for d in documents})
        ids = [c.id for c in chunks]
        existing = await self.store.backend.existing_ids(ids) if ids else set()
        new = [c for c in chunks if c.id not in existing]
        if new:
            since = time.perf_counter()
            vectors = await self.embedding_model.embed_async([c.text for c in new], input_type="document")
            self._time(report, "embed", since)
            since = time.perf_counter()
            await self.store.upsert_async(
                vectors, [c.text for c in new], [c.store_metadata() for c in new], [c.id for c in new]
            )
            self._time(report, "store", since)
        # Chunks a source no longer produces are stale: the file changed (or shrank to nothing).
        removed = 0
        since = time.perf_counter()
        for i in range(0, len(sources), _DELETE_GROUP):
            group = sources[i : i + _DELETE_GROUP]
            members = set(group)
            group_ids = [c.id for c in chunks if c.source in members]
            spec: dict[str, Any] = {"source": {"$in": group}}
            if group_ids:
                spec["id"] = {"$nin": group_ids}
            removed += await self.store.delete_async(filter=spec)
        self._time(report, "store", since)
        if not new and removed == 0:
            status = "skipped"
        elif not existing and removed == 0:
            status = "added"
        else:
            status = "updated"
        return status, len(new), removed, len(existing)
