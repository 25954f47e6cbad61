"""Retrieval metrics: pure functions over one ranked list of ids and the judged relevance of ids.

`relevance` maps an id to its graded judgement (BEIR qrels: 0 = not relevant, 1, 2 ...); ids not in it count as
not relevant. Definitions follow trec_eval / pytrec_eval, which BEIR reports: linear gains for nDCG, ties in the
ranking impossible (a ranking is a list), duplicate ids counted once at their first position.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence


def _dedupe(ranked: Sequence[str], k: int) -> list[str]:
    if k < 1:
        raise ValueError("k must be >= 1")
    seen: dict[str, None] = {}
    for id_ in ranked:
        seen.setdefault(id_)
        if len(seen) == k:
            break
    return list(seen)


def _relevant(relevance: Mapping[str, int]) -> set[str]:
    return {id_ for id_, grade in relevance.items() if grade > 0}


def dcg(gains: Iterable[float]) -> float:
    """Discounted cumulative gain: sum of gain_i / log2(i + 1), i 1-based."""
    return sum(gain / math.log2(i + 2) for i, gain in enumerate(gains))


def ndcg_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int = 10) -> float:
    """DCG of the top k over the DCG of the ideal top k; 0.0 when nothing is relevant."""
    top = _dedupe(ranked, k)
    ideal = dcg(sorted((g for g in relevance.values() if g > 0), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg(max(relevance.get(id_, 0), 0) for id_ in top) / ideal


def recall_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int = 100) -> float:
    """Share of the relevant ids found in the top k; 0.0 when nothing is relevant."""
    relevant = _relevant(relevance)
    if not relevant:
        return 0.0
    return len(relevant.intersection(_dedupe(ranked, k))) / len(relevant)


def precision_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int = 10) -> float:
    """Relevant ids in the top k over k (trec_eval's P@k: a short ranking is not padded out of the count)."""
    relevant = _relevant(relevance)
    return sum(1 for id_ in _dedupe(ranked, k) if id_ in relevant) / k


def mrr_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int = 10) -> float:
    """1 / rank of the first relevant id within the top k, else 0.0."""
    relevant = _relevant(relevance)
    for rank, id_ in enumerate(_dedupe(ranked, k), start=1):
        if id_ in relevant:
            return 1.0 / rank
    return 0.0


def hit_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int = 10) -> float:
    """1.0 if any relevant id is in the top k, else 0.0."""
    relevant = _relevant(relevance)
    return 1.0 if any(id_ in relevant for id_ in _dedupe(ranked, k)) else 0.0


def mean(values: Iterable[float]) -> float:
    """The arithmetic mean; 0.0 for no values (callers state n next to it)."""
    items = list(values)
    return sum(items) / len(items) if items else 0.0
