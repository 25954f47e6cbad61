"""Ordering candidates by reranker scores: the pure step every reranker ends with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from mini.types import RetrievalResult


def rank_by_scores(
    candidates: Sequence[RetrievalResult], scores: Sequence[float | None], *, top_k: int
) -> list[RetrievalResult]:
    """Candidates best first with `score` set; unscored (None) after all scored ones with score 0.0; ties
    keep the input order; at most `top_k`."""
    if len(scores) != len(candidates):
        raise ValueError(f"{len(scores)} scores for {len(candidates)} candidates")
    order = sorted(range(len(candidates)), key=lambda i: (scores[i] is None, -(scores[i] or 0.0)))
    return [replace(candidates[i], score=scores[i] or 0.0) for i in order[: max(0, top_k)]]
