"""`query_batch`: per-question pipelines under one bound, results per item in input order, failures per item."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mini import AgenticRAG, BatchResult
from mini.errors import EmptyQuestionError, InvalidInputError
from tests.conftest import SAMPLE_CORPUS

QUESTIONS = [
    "How much is the 2025 library budget?",
    "When is glass collected for recycling?",
    "   ",
    "When is the Lighthouse Run?",
    "Where can dogs run off the leash?",
    "When was the lighthouse built?",
]


async def test_results_come_back_in_input_order_with_the_failing_question_reported(
    rag: AgenticRAG, sim: Any
) -> None:
    sim.configure(chat_ms=40, slow_fraction=0.4, slow_ms=200)  # completion order differs from input order
    results = await rag.query_batch_async(QUESTIONS, concurrency=3)
    assert [r.index for r in results] == list(range(len(QUESTIONS)))
    assert [r.question for r in results] == QUESTIONS
    assert isinstance(results[2].error, EmptyQuestionError) and results[2].response is None
    assert all(r.ok and r.response is not None and r.response.answer for i, r in enumerate(results) if i != 2)
    assert (
        results[0].to_dict()["ok"] is True and results[2].to_dict()["error"]["type"] == "EmptyQuestionError"
    )
    # Each question is its own pipeline: rewrite + answer, at most 3 questions (so 3 chats) in flight.
    stats = sim.stats()["chat"]
    assert stats["requests"] == 2 * 5
    assert 1 < stats["peak_in_flight"] <= 3


async def test_iterating_yields_in_completion_order_and_closing_early_cancels_the_rest(
    rag: AgenticRAG, sim: Any
) -> None:
    sim.configure(chat_ms=300)
    questions = [f"When is glass collected? ({i})" for i in range(12)]
    results = rag.iter_query_batch_async(questions, concurrency=4)
    first: BatchResult = await results.__anext__()
    assert first.ok and first.index < 4
    await results.aclose()  # type: ignore[attr-defined]
    for _ in range(1500):  # the cancelled questions' requests are closed, not left running (30 s at most)
        if sim.stats()["chat"]["in_flight"] == 0:
            break
        await asyncio.sleep(0.02)
    assert sim.stats()["chat"]["in_flight"] == 0
    assert sim.stats()["chat"]["requests"] < 2 * 12


def test_the_sync_twin_answers_a_batch_offline(tmp_path: Path) -> None:
    from mini import EmbeddingModel, VectorStore

    rag = AgenticRAG(VectorStore(str(tmp_path), collection_name="b"), EmbeddingModel())
    rag.index_documents([SAMPLE_CORPUS])
    results = rag.query_batch(QUESTIONS[:2], concurrency=2)
    assert [r.ok for r in results] == [True, True]
    assert "$1.2 million" in results[0].response.answer  # type: ignore[union-attr]
    with pytest.raises(InvalidInputError, match="list of strings"):
        rag.query_batch("one question")
    with pytest.raises(InvalidInputError, match="concurrency"):
        rag.query_batch(QUESTIONS, concurrency=0)
    assert rag.query_batch([]) == []
    rag.close()
