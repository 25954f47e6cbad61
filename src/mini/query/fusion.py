"""Reciprocal rank fusion of several ranked result lists. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from mini.types import RetrievalResult


def rrf(
    rankings: Sequence[Sequence[RetrievalResult]], *, k: int = 60, weights: Sequence[float] | None = None
) -> list[RetrievalResult]:
    """Fuse rankings by reciprocal rank: score(d) = sum_i w_i / (k + rank_i(d)), rank 1-based.

    Results are deduplicated by id (the first occurrence's text and metadata are kept) and carry the fused
    score. Raw scores are ignored on purpose: cosine scores of different queries are not comparable.
    """
    if weights is not None and len(weights) != len(rankings):
        raise ValueError("one weight per ranking")
    fused: dict[str, float] = {}
    first: dict[str, RetrievalResult] = {}
    for i, ranking in enumerate(rankings):
        weight = 1.0 if weights is None else weights[i]
        seen_here: set[str] = set()
        for rank, hit in enumerate(ranking, start=1):
            if hit.id in seen_here:
                continue
            seen_here.add(hit.id)
            fused[hit.id] = fused.get(hit.id, 0.0) + weight / (k + rank)
            first.setdefault(hit.id, hit)
    order = sorted(fused, key=lambda id_: -fused[id_])  # stable: ties keep first-seen order
    return [replace(first[id_], score=fused[id_]) for id_ in order]
