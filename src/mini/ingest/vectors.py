"""Ingestion's embedding stage: each chunk's vector from the file's stored rows, the cache, a request already in
flight for the same text, or a new request batched with other files' chunks."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from mini import tracing
from mini._batching import LingerBatcher
from mini.ingest.cache import CacheKey, EmbeddingCache

if TYPE_CHECKING:
    from mini.embeddings.base import EmbeddingModel
    from mini.ingest.report import IngestReport
    from mini.types import Chunk

# A partial batch waits this long for more chunks before it is sent anyway (the producer may be slow).
LINGER_S = 0.02

Vector = np.ndarray | asyncio.Future[np.ndarray]


class Vectors:
    """Vectors for chunks; texts from many files share embedding requests of `batch_size`, `concurrency` in
    flight, and a partial batch waits `LINGER_S` for more texts (a slow producer never stalls the pipeline, a
    fast one always fills its batches). Counts requests, embedded chunks and cache hits in `report`;
    `progress()` is called after each request, `timed("embed", since)` records its time."""

    def __init__(
        self,
        model: EmbeddingModel,
        cache: EmbeddingCache,
        report: IngestReport,
        *,
        batch_size: int,
        concurrency: int,
        progress: Callable[[], None],
        timed: Callable[[str, float], None],
    ) -> None:
        self.model = model
        self.cache = cache
        self.report = report
        self.progress = progress
        self.timed = timed
        self.key = ""  # the embedding model's key (`state.embed_key`), set once the run knows it
        self.inflight: dict[CacheKey, asyncio.Future[np.ndarray]] = {}
        self.batcher: LingerBatcher[str, np.ndarray] = LingerBatcher(
            self._embed_batch, max_size=batch_size, linger=LINGER_S, concurrency=concurrency
        )

    def resolve(self, chunks: list[Chunk], known: dict[CacheKey, np.ndarray]) -> list[Vector]:
        """Each chunk's vector, or a future for it: from `known` (the file's stored rows), the cache, an
        embedding already in flight for the same text, or a new request."""
        out: list[Vector] = []
        for chunk in chunks:
            key = (self.key, chunk.content_hash)
            vector = known.get(key)
            if vector is None:
                vector = self.cache.get(key)
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
            self.cache.put(key, future.result())

    async def _embed_batch(self, texts: list[str]) -> list[np.ndarray | BaseException]:
        """One request. A rejected batch is retried text by text, so one bad text fails only its own file."""
        from mini.embeddings.base import embed_splitting_rejected

        since = time.perf_counter()
        # The embedder itself: the facade's micro-batching is for small concurrent calls, not batches.
        embedder = self.model.embedder
        try:
            with tracing.span("mini.ingest.embed_batch", {"mini.batch_size": len(texts)}) as span:
                tracing.set_model_call(span, embedder.name, operation="embeddings")
                results, requests = await embed_splitting_rejected(embedder, texts, input_type="document")
                span.set_attribute("mini.requests", requests)
        except BaseException:
            self.report.embedding_requests += 1  # a failed request was still made
            raise
        finally:
            self.timed("embed", since)
        self.report.embedding_requests += requests
        self.report.chunks_embedded += sum(not isinstance(r, BaseException) for r in results)
        self.progress()
        return results
