"""Retrieval metrics against values computed by hand (and the trec_eval conventions BEIR uses)."""

from __future__ import annotations

import math

import pytest

from mini.eval.metrics import hit_at_k, mean, mrr_at_k, ndcg_at_k, precision_at_k, recall_at_k

QRELS = {"b": 1, "c": 2, "z": 0}


def test_ndcg_uses_linear_gains_and_the_ideal_order_of_the_judged_grades() -> None:
    # DCG = 0 + 1/log2(3) + 2/log2(4) = 1.63093; ideal = 2/log2(2) + 1/log2(3) = 2.63093
    assert ndcg_at_k(["a", "b", "c"], QRELS, 3) == pytest.approx(1.630930 / 2.630930, abs=1e-6)
    assert ndcg_at_k(["c", "b"], QRELS, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["b", "c"], QRELS, 1) == pytest.approx(1 / 2)  # ideal top-1 holds the grade-2 doc
    assert ndcg_at_k(["a", "z"], QRELS, 10) == 0.0
    assert ndcg_at_k(["a"], {"x": 0}, 10) == 0.0  # nothing relevant: 0, not a division by zero


def test_duplicates_count_once_at_their_first_position() -> None:
    assert ndcg_at_k(["c", "c", "b"], QRELS, 2) == pytest.approx(ndcg_at_k(["c", "b"], QRELS, 2))
    assert precision_at_k(["b", "b", "a"], QRELS, 2) == pytest.approx(0.5)


def test_recall_precision_mrr_and_hit() -> None:
    assert recall_at_k(["a", "b", "x"], QRELS, 100) == pytest.approx(0.5)
    assert recall_at_k(["a", "b", "c"], QRELS, 2) == pytest.approx(0.5)
    assert recall_at_k([], {"a": 0}, 10) == 0.0
    assert precision_at_k(["a", "b"], QRELS, 10) == pytest.approx(0.1)  # P@10 of a short list
    assert mrr_at_k(["a", "x", "c"], QRELS, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["a", "x", "c"], QRELS, 2) == 0.0
    assert hit_at_k(["a", "c"], QRELS, 2) == 1.0 and hit_at_k(["a", "c"], QRELS, 1) == 0.0
    assert mean([1.0, 0.0, 0.5]) == pytest.approx(0.5) and mean([]) == 0.0


def test_k_must_be_positive() -> None:
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k(["a"], QRELS, 0)


def test_graded_relevance_example_from_a_three_level_qrel() -> None:
    qrels = {"d1": 3, "d2": 2, "d3": 3, "d4": 1}
    ranked = ["d1", "d2", "d3", "d5", "d4"]
    dcg = 3 + 2 / math.log2(3) + 3 / 2 + 0 + 1 / math.log2(6)
    ideal = 3 + 3 / math.log2(3) + 2 / 2 + 1 / math.log2(5)
    assert ndcg_at_k(ranked, qrels, 5) == pytest.approx(dcg / ideal)
