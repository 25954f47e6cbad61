"""`evaluate_async` / `evaluate` offline: real local embeddings and an embedded LanceDB store over the demo corpus,
extractive answers, retrieval and offline text metrics; no LLM anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mini.errors import ConfigurationError, InvalidInputError
from mini.eval import evaluate, evaluate_async
from mini.eval.runner import OFFLINE_METRICS, select_metrics
from tests.eval.conftest import SAMPLE_SET, offline_rag

OFFLINE_KEYS = ["hit@5", "mrr@5", "ndcg@5", "recall@5", *OFFLINE_METRICS]


async def test_the_sample_set_scores_every_row_offline(offline_store: Path) -> None:
    async with offline_rag(offline_store) as rag:
        seen = []
        result = await evaluate_async(rag, SAMPLE_SET, concurrency=4, progress=seen.append)
    n = len(result.rows)
    assert n == 12 and len(seen) == n and not result.failed_rows
    assert result.metrics == OFFLINE_KEYS  # no LLM: no judged metrics by default
    summary = result.summary
    assert all((s.n, s.failed, s.skipped) == (n, 0, 0) for s in summary.values()), summary
    # The demo corpus was written so each question has one clear source; extractive answers quote it.
    assert summary["hit@5"].mean == 1.0
    assert summary["token_f1"].mean is not None and summary["token_f1"].mean > 0.5
    assert summary["semantic_similarity"].mean is not None and summary["semantic_similarity"].mean > 0.7
    assert summary["citation_coverage"].mean is not None and summary["citation_coverage"].mean > 0.9
    assert [row.item.id for row in result.rows][:2] == ["library-budget", "glass"]  # dataset order
    assert result.settings["llm"] == "extractive" and result.settings["judge"] is None

    timings = result.timings
    assert timings["answers"] == n and timings["total_s"] > 0
    assert timings["avg_answer_ms"] > 0 and timings["retrieval_s"] > 0 and timings["generation_s"] > 0

    data = json.loads(result.to_json())
    assert data["summary"]["token_f1"]["n"] == n and data["rows_failed"] == 0
    row = data["rows"][1]
    assert row["question"] == "When is glass collected for recycling?"
    assert "first Wednesday" in row["answer"] and row["contexts"][0]["source"].endswith(
        "recycling_schedule.pdf"
    )
    assert row["scores"]["hit@5"] == {"status": "scored", "value": 1.0}


async def test_missing_ground_truth_and_relevance_skip_their_metrics(offline_store: Path) -> None:
    dataset = [{"question": "When is glass collected for recycling?"}]
    async with offline_rag(offline_store) as rag:
        result = await evaluate_async(
            rag, dataset, metrics=["retrieval", "token_f1", "citation_coverage"], k=3
        )
    (row,) = result.rows
    assert row.status == "scored"
    assert (
        row.scores["hit@3"].status == "skipped"
        and row.scores["hit@3"].reason == "no relevant_ids or relevant_sources"
    )
    assert row.scores["token_f1"].reason == "no ground_truth"
    assert row.scores["citation_coverage"].status == "scored"
    summary = result.summary
    assert (summary["token_f1"].n, summary["token_f1"].skipped, summary["token_f1"].mean) == (0, 1, None)


def test_the_sync_twin_runs_on_the_portal(offline_store: Path) -> None:
    rag = offline_rag(offline_store)
    try:
        result = evaluate(
            rag,
            [{"question": "When was the lighthouse built?", "ground_truth": "It was built in 1871."}],
            metrics=["token_f1"],
            name="one question",
        )
    finally:
        rag.close()
    assert "1871" in (result.rows[0].answer or "") and result.summary["token_f1"].n == 1
    assert result.settings["dataset"] == "one question"


def test_metric_choices_are_checked_before_anything_runs() -> None:
    assert select_metrics(None, has_judge=True)[-1] == "context_recall"
    assert select_metrics(["offline,hit"], has_judge=False) == ["hit", *OFFLINE_METRICS]
    assert "faithfulness" not in select_metrics(["all"], has_judge=False)
    with pytest.raises(ConfigurationError, match="faithfulness need an LLM judge"):
        select_metrics(["faithfulness"], has_judge=False)
    with pytest.raises(InvalidInputError, match="unknown metric 'bleu'"):
        select_metrics(["bleu"], has_judge=True)


async def test_bad_arguments_raise_before_any_question_is_asked(offline_store: Path) -> None:
    rag = offline_rag(offline_store)
    with pytest.raises(ConfigurationError):
        await evaluate_async(rag, ["q"], metrics=["context_recall"])
    with pytest.raises(InvalidInputError, match="concurrency"):
        await evaluate_async(rag, ["q"], concurrency=0)
    with pytest.raises(InvalidInputError, match="no such file"):
        await evaluate_async(rag, Path("/nonexistent/questions.jsonl"))
