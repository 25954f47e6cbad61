"""`evaluate_async` with an LLM: answers and judge calls against the simulated OpenAI-compatible provider over
real HTTP (429s, rejected inputs, the concurrency bound seen from the provider's side)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mini import AgenticRAG
from mini.eval import evaluate_async
from mini.eval.dataset import load_dataset
from mini.eval.metrics import mean
from mini.eval.runner import ALL_METRICS
from tests.conftest import SAMPLE_CORPUS
from tests.eval.conftest import SAMPLE_SET
from tests.query.conftest import make_rag

ALL_KEYS = [f"{m}@5" if m in ("hit", "mrr", "ndcg", "recall") else m for m in ALL_METRICS]


@pytest.fixture
async def rag(sim: Any, tmp_path: Path) -> AgenticRAG:
    # Enough retries that 10% 429s never exhaust them (0.1**7 per call).
    rag = make_rag(sim, tmp_path, max_retries=6)
    report = await rag.index_documents_async([SAMPLE_CORPUS])
    assert report.ok, report.failures
    sim.reset()
    return rag


async def test_llm_judged_metrics_score_every_row(rag: AgenticRAG, sim: Any) -> None:
    async with rag:
        result = await evaluate_async(rag, SAMPLE_SET, concurrency=8)
    assert result.metrics == ALL_KEYS and not result.failed_rows
    assert all(s.n == len(result.rows) for s in result.summary.values())
    summary = result.summary
    # The simulated model answers by quoting the retrieved chunks, and judges by word overlap: the answers
    # are faithful, and the ground truths are found in the contexts.
    assert summary["faithfulness"].mean is not None and summary["faithfulness"].mean > 0.9
    assert summary["context_recall"].mean is not None and summary["context_recall"].mean > 0.9
    assert 0 < (summary["answer_relevancy"].mean or 0) < 1 and (summary["context_precision"].mean or 0) > 0
    faithfulness = result.rows[0].scores["faithfulness"]
    assert len(faithfulness.details["statements"]) == len(faithfulness.details["verdicts"]) > 0
    assert result.settings["judge"] == "openai:sim-chat"
    assert result.usage["judge"]["prompt_tokens"] > 0 and result.usage["answers"]["completion_tokens"] > 0
    # per question: rewrite + answer, statements + verdicts, questions, 5 contexts judged, attribution
    assert sim.stats()["chat"]["responses_ok"] == len(result.rows) * 11


async def test_with_10_percent_429s_every_row_still_scores(rag: AgenticRAG, sim: Any) -> None:
    sim.configure(rate_limit_fraction=0.1, retry_after=0.05)
    async with rag:
        result = await evaluate_async(rag, SAMPLE_SET, concurrency=8)
    stats = sim.stats()
    assert stats["chat"]["rate_limited"] > 0 and stats["chat"]["retried"] > 0
    assert not result.failed_rows, [row.failures or row.error for row in result.failed_rows]
    assert all((s.n, s.failed) == (len(result.rows), 0) for s in result.summary.values())


async def test_failed_rows_are_counted_with_reasons_and_left_out_of_the_means(
    rag: AgenticRAG, sim: Any
) -> None:
    sim.configure(reject_text="XYZZY")  # the provider answers 400 to any embedding input containing it
    items = [item.to_dict() for item in load_dataset(SAMPLE_SET)[:4]]
    items[1]["question"] = "What does XYZZY mean?"  # its retrieval fails: no answer at all
    items[2]["ground_truth"] = "..."  # a ground truth without sentences: context recall is undefined
    async with rag:
        result = await evaluate_async(rag, items, concurrency=4)

    assert [row.status for row in result.rows] == ["scored", "failed", "failed", "scored"]
    no_answer, no_sentences = result.rows[1], result.rows[2]
    assert no_answer.answer is None and no_answer.error is not None and "BadRequestError" in no_answer.error
    assert set(no_answer.failures) == set(result.metrics)
    assert all(reason.startswith("no answer: BadRequestError") for reason in no_answer.failures.values())
    assert no_sentences.failures == {"context_recall": "the ground truth has no sentences"}
    assert no_sentences.scores["faithfulness"].status == "scored"  # the row's other metrics still count

    summary = result.summary
    assert (summary["faithfulness"].n, summary["faithfulness"].failed) == (3, 1)
    assert (summary["context_recall"].n, summary["context_recall"].failed) == (2, 2)
    scored = [row.scores["token_f1"].value for row in result.rows if row.scores["token_f1"].value is not None]
    assert summary["token_f1"].mean == pytest.approx(mean(scored))
    data = result.to_dict()
    assert data["rows_failed"] == 2 and data["summary"]["context_recall"] == {
        "mean": pytest.approx(summary["context_recall"].mean, abs=1e-6),
        "n": 2,
        "failed": 2,
        "skipped": 0,
    }


async def test_requests_in_flight_never_exceed_the_concurrency(rag: AgenticRAG, sim: Any) -> None:
    sim.configure(chat_ms=20, embed_ms=5)  # long enough for requests to overlap
    async with rag:
        await evaluate_async(rag, SAMPLE_SET, concurrency=3)
        wide = sim.stats()["peak_in_flight"]  # chats and embeddings together
        sim.reset()
        await evaluate_async(rag, load_dataset(SAMPLE_SET)[:3], concurrency=1)
        sequential = sim.stats()["peak_in_flight"]
    assert 2 <= wide <= 3
    assert sequential == 1
