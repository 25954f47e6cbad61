"""The LLM reranker: score parsing and prompts (pure), ranking rules (an in-process model), and concurrency,
completeness and error propagation against the simulated OpenAI-compatible server over real HTTP."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

import pytest

from mini.config import LLMConfig
from mini.errors import AuthenticationError, ProviderServerError
from mini.llms.base import LLM, Completion, Message, create_llm
from mini.rerankers._ranking import rank_by_scores
from mini.rerankers.llm import (
    MAX_PASSAGE_CHARS,
    LLMReranker,
    parse_score,
    score_messages,
    truncate_passage,
)
from mini.testing.fakes import ScriptedLLM
from tests.rerankers.conftest import candidates, passage_of, scripted_llm


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("7", 0.7),
        ("7.5", 0.75),
        ("0", 0.0),
        ("10", 1.0),
        ("Score: 7", 0.7),
        ("**Relevance:** 8/10", 0.8),
        ("7/10", 0.7),
        ("3/5", 0.6),
        ("6 out of 10", 0.6),
        ("Relevance (0-10): 6", 0.6),  # the prompt's last line echoed back
        ("Score - 9", 0.9),
        ("**7**", 0.7),
        ("7 - clearly relevant", 0.7),
        ("I would rate it 4", 0.4),
        ("The passage lists 3 items. Score: 8", 0.8),  # the labelled number wins over a stray one
        ("Score: 2. On reflection, score: 5", 0.5),  # the last verdict counts
        ("<think>maybe 3, maybe 9</think>\nScore: 6", 0.6),
    ],
)
def test_parse_score_reads_common_reply_shapes(reply: str, score: float) -> None:
    assert parse_score(reply) == pytest.approx(score)


@pytest.mark.parametrize(
    "reply",
    ["", "I cannot tell.", "11", "Score: 12", "-3", "Score: -1", "12/10", "between 2 and 4", "0-10 scale: 5"],
)
def test_parse_score_refuses_to_guess(reply: str) -> None:
    assert parse_score(reply) is None


def test_truncate_passage_cuts_long_text_at_a_word_boundary() -> None:
    assert truncate_passage("short  text\n here") == "short text here"
    long = " ".join(f"word{i}" for i in range(2000))
    cut = truncate_passage(long, 100)
    assert len(cut) <= 100 and cut.endswith("…")
    assert long.startswith(cut[:-1]) and cut[-2].isdigit()  # whole words only
    assert len(truncate_passage("x" * 5000, 100)) == 100  # no boundary near the end: a hard cut


def test_score_messages_hold_the_query_and_a_truncated_passage() -> None:
    messages = score_messages("glass collection", "y" * (MAX_PASSAGE_CHARS * 3))
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert "Query: glass collection" in user
    assert MAX_PASSAGE_CHARS <= len(user) < MAX_PASSAGE_CHARS + 100


def test_rank_by_scores_keeps_input_order_on_ties_and_puts_unscored_last() -> None:
    hits = candidates(5)
    ranked = rank_by_scores(hits, [0.5, None, 0.9, 0.5, 0.0], top_k=5)
    assert [h.id for h in ranked] == ["c2", "c0", "c3", "c4", "c1"]
    assert [h.score for h in ranked] == [0.9, 0.5, 0.5, 0.0, 0.0]
    assert [h.id for h in rank_by_scores(hits, [0.1, 0.2, 0.3, 0.4, 0.5], top_k=2)] == ["c4", "c3"]


async def test_every_candidate_is_scored_and_ranked_by_its_own_score() -> None:
    # Candidate i gets score (7 * i) % 11 on 0-10: a permutation of retrieval order, with one unreadable reply.
    def reply(passage: str) -> str:
        i = int(passage.split()[-1])
        return "no idea" if i == 13 else f"Score: {(7 * i) % 11}"

    llm = scripted_llm(reply)
    reranker = LLMReranker(llm, max_concurrency=8)
    assert isinstance(llm, LLM)
    hits = candidates(40)
    ranked = await reranker.rerank("q", hits, top_k=40)
    assert len(llm.calls) == 40
    assert {passage_of(call.prompt) for call in llm.calls} == {h.text for h in hits}
    assert all(call.temperature == 0.0 and call.max_tokens == 16 for call in llm.calls)
    expected = sorted(
        (i for i in range(40) if i != 13), key=lambda i: -((7 * i) % 11)
    )  # stable: ties in order
    assert [h.id for h in ranked] == [f"c{i}" for i in [*expected, 13]]
    assert [h.score for h in ranked[:3]] == [1.0, 1.0, 1.0]
    assert ranked[-1].score == 0.0
    assert 1 < llm.peak_in_flight <= 8
    top = await reranker.rerank("q", hits, top_k=3)
    assert [h.id for h in top] == [h.id for h in ranked[:3]]


async def test_empty_candidates_or_top_k_zero_make_no_calls() -> None:
    llm = ScriptedLLM(lambda _: "5")
    reranker = LLMReranker(llm)
    assert await reranker.rerank("q", [], top_k=5) == []
    assert await reranker.rerank("q", candidates(3), top_k=0) == []
    assert llm.calls == []


async def test_a_provider_error_propagates_and_stops_the_other_calls() -> None:
    class FailingLLM(ScriptedLLM):
        async def complete(self, messages: Sequence[Message], **kwargs: Any) -> Completion:
            if "passage 2\n" in messages[-1]["content"]:
                raise ProviderServerError("boom", status_code=500, provider="fake")
            return await super().complete(messages, **kwargs)

    llm = FailingLLM(lambda _: "5", delay=5.0)
    with pytest.raises(ProviderServerError):
        await asyncio.wait_for(LLMReranker(llm, max_concurrency=4).rerank("q", candidates(40), top_k=5), 2)
    assert llm.in_flight == 0  # the siblings were cancelled, not left running
    assert len(llm.calls) < 40


def _sim_llm(sim: Any, **config: Any) -> LLM:
    return create_llm(LLMConfig(model="sim-chat", base_url=sim.base_url, api_key="sim", **config))


async def test_40_candidates_are_all_scored_concurrently_against_the_simulator(sim: Any) -> None:
    sim.configure(chat_ms=50)
    values = [i / 4 for i in range(40)]  # 0, 0.25, ..., 9.75: every reply distinct
    random.Random(7).shuffle(values)
    sim.script([{"content": f"Score: {v}"} for v in values])
    llm = _sim_llm(sim)
    try:
        ranked = await LLMReranker(llm, max_concurrency=8).rerank("q", candidates(40), top_k=40)
    finally:
        await llm.aclose()
    stats = sim.stats()["chat"]
    assert stats["requests"] == 40 and stats["responses_ok"] == 40
    assert 1 < stats["peak_in_flight"] <= 8
    assert sorted(h.id for h in ranked) == sorted(f"c{i}" for i in range(40))
    assert [h.score for h in ranked] == pytest.approx(sorted((v / 10 for v in values), reverse=True))


async def test_scores_map_back_to_their_candidates_over_http(sim: Any) -> None:
    # One call at a time, so the simulator's scripted replies (first in, first out) meet candidates in order.
    replies = ["Score: 3", "9/10", "5", "I cannot judge this.", "Relevance: 9", "1"]
    sim.script([{"content": r} for r in replies])
    llm = _sim_llm(sim)
    try:
        ranked = await LLMReranker(llm, max_concurrency=1).rerank("q", candidates(6), top_k=6)
    finally:
        await llm.aclose()
    assert [(h.id, h.score) for h in ranked] == [
        ("c1", 0.9),
        ("c4", 0.9),
        ("c2", 0.5),
        ("c0", 0.3),
        ("c5", 0.1),
        ("c3", 0.0),  # unreadable: after every scored candidate
    ]
    assert sim.stats()["chat"]["peak_in_flight"] == 1


async def test_the_providers_shared_limiter_bounds_the_reranker_too(sim: Any) -> None:
    sim.configure(chat_ms=30)
    sim.script([{"content": "5"}] * 20)
    llm = _sim_llm(sim, max_concurrency=3)
    try:
        ranked = await LLMReranker(llm, max_concurrency=16).rerank("q", candidates(20), top_k=5)
    finally:
        await llm.aclose()
    stats = sim.stats()["chat"]
    assert stats["requests"] == 20
    assert 1 < stats["peak_in_flight"] <= 3
    assert [h.id for h in ranked] == ["c0", "c1", "c2", "c3", "c4"]  # all tied: retrieval order


async def test_authentication_failure_propagates_as_a_typed_error(sim: Any) -> None:
    sim.configure(api_key="the-right-key")
    llm = _sim_llm(sim)
    try:
        with pytest.raises(AuthenticationError):
            await LLMReranker(llm).rerank("q", candidates(10), top_k=3)
    finally:
        await llm.aclose()
