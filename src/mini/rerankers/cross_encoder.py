"""Cross-encoder reranker: a local sentence-transformers model scores (query, passage) pairs in a thread.

Needs the optional `torch` extra (sentence-transformers + torch). The model is read from a local directory
only, never downloaded; it is loaded on first use, once, in a thread, and every prediction runs in a thread
too, so the event loop stays free while torch works.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mini import _portal
from mini._checks import at_least
from mini.errors import ConfigurationError, MissingDependencyError
from mini.rerankers._ranking import rank_by_scores
from mini.types import RetrievalResult

EXTRA = "torch"  # the pyproject extra that installs sentence-transformers (and a CPU torch)
WHAT = "the cross-encoder reranker"


def _sentence_transformers_installed() -> bool:
    try:
        return importlib.util.find_spec("sentence_transformers") is not None
    except ValueError:  # imported already, by a module without a spec (e.g. a test double)
        return True


class CrossEncoderReranker:
    """Ranks candidates by `sentence_transformers.CrossEncoder(model_path).predict` scores, best first.

    `score` is set to the model's output for the pair (for the usual one-label rerankers, e.g. the
    ms-marco MiniLM family, a sigmoid probability in [0, 1]). Pairs go to the model `batch_size` at a time,
    one batch in a thread at a time per event loop (torch already uses every core for one batch), so a
    cancelled rerank stops between batches. `device` is passed through ("cpu", "cuda", ...; None = auto).
    Construction checks only that sentence-transformers is installed; it reads no files.
    """

    def __init__(self, model_path: str | Path, *, batch_size: int = 32, device: str | None = None) -> None:
        at_least(1, batch_size=batch_size)
        if not _sentence_transformers_installed():
            raise MissingDependencyError(WHAT, EXTRA, "sentence-transformers")
        self.model_path = Path(model_path).expanduser()
        self.name = f"cross-encoder:{self.model_path.name}"
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        # As in the local embedder: per event loop, concurrent first calls queue on an asyncio.Lock (no thread
        # is parked); across loops and threads (portal + user loop) the threading lock loads exactly once.
        self._loop_locks: _portal.PerLoop[asyncio.Lock] = _portal.PerLoop(asyncio.Lock)
        self._load_lock = threading.Lock()
        self._predicting: _portal.PerLoop[asyncio.Lock] = _portal.PerLoop(asyncio.Lock)

    def __repr__(self) -> str:
        return f"CrossEncoderReranker({str(self.model_path)!r}, loaded={self._model is not None})"

    async def warmup(self) -> None:
        """Load the model now rather than on the first `rerank` (e.g. from a server's startup hook)."""
        if self._model is None:
            await self._ensure_loaded()

    async def _ensure_loaded(self) -> Any:
        async with self._loop_locks.get():
            model = self._model
            if model is None:
                model = await asyncio.to_thread(self._load_once)
            return model

    def _load_once(self) -> Any:
        with self._load_lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> Any:
        if not self.model_path.is_dir():
            raise ConfigurationError(
                f"cross-encoder model directory not found: {self.model_path} "
                "(models are read from a local directory, never downloaded)"
            )
        try:
            from sentence_transformers import CrossEncoder
        except ImportError as exc:  # installed but broken (e.g. torch missing)
            raise MissingDependencyError(WHAT, EXTRA, exc.name or "sentence-transformers") from exc
        return CrossEncoder(str(self.model_path), device=self.device, local_files_only=True)

    def _predict(self, model: Any, pairs: list[tuple[str, str]]) -> list[float]:
        import numpy as np  # here, not at the top: `import mini` stays free of numpy

        scores = np.asarray(model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False), float)
        if scores.ndim == 2 and scores.shape[1] == 1:  # a one-label model may answer one column
            scores = scores[:, 0]
        if scores.shape != (len(pairs),):
            raise ConfigurationError(
                f"{self.name} gave scores of shape {scores.shape} for {len(pairs)} pairs; "
                "a reranker needs a model with one score per pair"
            )
        return [float(score) for score in scores]

    async def rerank(
        self, query: str, candidates: Sequence[RetrievalResult], *, top_k: int
    ) -> list[RetrievalResult]:
        if not candidates or top_k <= 0:
            return []
        model = self._model or await self._ensure_loaded()
        pairs = [(query, candidate.text) for candidate in candidates]
        scores: list[float | None] = []
        for start in range(0, len(pairs), self.batch_size):
            async with self._predicting.get():
                scores += await asyncio.to_thread(
                    self._predict, model, pairs[start : start + self.batch_size]
                )
        return rank_by_scores(candidates, scores, top_k=top_k)
