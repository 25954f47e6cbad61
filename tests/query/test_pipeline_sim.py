"""The pipeline against a real HTTP server speaking the OpenAI API (mini.testing.sim): concurrency,
streaming, rewriting, and provider failures surfacing as typed errors, never as answers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mini import AgenticRAG, EmbeddingModel, LLMConfig, RerankerConfig, RetrievalConfig, VectorStore
from mini.errors import AuthenticationError, ProviderServerError
from mini.testing.looplag import LoopLagProbe
from tests.conftest import SAMPLE_CORPUS
from tests.query.conftest import make_rag


async def local_embeddings_rag(sim: Any, store_dir: Path, max_retries: int) -> AgenticRAG:
    """The sample corpus indexed with local embeddings, so only the simulated chat model meets its faults."""
    rag = AgenticRAG(
        VectorStore(str(store_dir), collection_name="t"),
        EmbeddingModel(),
        llm_config=LLMConfig(model="sim-chat", base_url=sim.base_url, api_key="sim", max_retries=max_retries),
    )
    await rag.index_documents_async([SAMPLE_CORPUS])
    return rag


@contextlib.contextmanager
def another_api_key(sim: Any) -> Iterator[None]:
    """The simulator expects another API key meanwhile: every request of ours is refused (401)."""
    sim.configure(api_key="other-key")
    try:
        yield
    finally:
        sim.configure(api_key=None)


async def test_64_concurrent_queries_keep_64_chats_in_flight_and_the_loop_free(
    rag: AgenticRAG, sim: Any, lag_probe: LoopLagProbe
) -> None:
    sim.configure(chat_ms=300, embed_ms=50)
    questions = [f"How much is the 2025 library budget? ({i})" for i in range(64)]
    async with lag_probe:
        responses = await asyncio.gather(*(rag.query_async(q) for q in questions))
    stats = sim.stats()
    assert stats["chat"]["peak_in_flight"] == 64
    assert stats["chat"]["requests"] == 128  # one rewrite + one answer per question, no retries
    # Each question embeds its original and variants in one call, and concurrent calls share requests
    # (micro-batching): far fewer than 64 requests, every question still gets its own vectors.
    assert stats["embeddings"]["requests"] <= 8
    assert stats["embeddings"]["inputs_embedded"] == 64 * 3
    assert all(r.citations and r.metadata["answer_type"] == "llm" for r in responses)
    assert lag_probe.own_max_ms < 50, lag_probe.summary()


async def test_llm_answer_cites_sources_and_reports_usage(rag: AgenticRAG, sim: Any) -> None:
    response = await rag.query_async("How much is the 2025 library budget?")
    assert response.metadata["answer_type"] == "llm"
    assert response.metadata["llm"] == "openai:sim-chat"
    assert response.metadata["rewrite"] == "ok"
    assert response.rewritten_queries[0] == "How much is the 2025 library budget?"
    assert len(response.rewritten_queries) == 3
    # The simulator answers with the first sentence of sources [1] and [2], cited.
    assert [c.number for c in response.citations] == [1, 2]
    assert response.answer.startswith(" ".join(response.retrieved_chunks[0].text.split())[:30])
    usage = response.metadata["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    # Rewrite and answer both count: the per-question usage adds up to what the model instance spent.
    assert rag.llm is not None
    assert usage == rag.llm.usage.as_dict()
    assert usage["completion_tokens"] > len(response.answer.split())


async def test_rewriting_can_be_disabled(sim: Any, tmp_path: Path) -> None:
    rag = make_rag(sim, tmp_path)
    rag.retrieval_config = RetrievalConfig(use_query_rewriting=False)
    await rag.index_documents_async([SAMPLE_CORPUS])
    sim.reset()
    response = await rag.query_async("When is glass collected?")
    assert response.metadata["rewrite"] == "disabled"
    assert sim.stats()["chat"]["requests"] == 1


async def test_stream_relays_tokens_and_resolves_citations_as_they_arrive(rag: AgenticRAG, sim: Any) -> None:
    events = [e async for e in rag.stream_async("When is glass collected for recycling?")]
    kinds = [e.type for e in events]
    assert kinds[0] == "sources" and kinds[-1] == "done"
    assert kinds.count("token") > 3
    done = events[-1].data
    assert "".join(e.data for e in events if e.type == "token") == done["answer"]
    assert [e.data["number"] for e in events if e.type == "citation"] == [1, 2]
    assert done["metadata"]["usage"]["completion_tokens"] > 0
    assert sim.stats()["chat"]["stream_requests"] == 1


async def test_closing_a_stream_early_cancels_the_upstream_request(rag: AgenticRAG, sim: Any) -> None:
    sim.configure(token_ms=50)
    stream = rag.stream_async("When is glass collected for recycling?")
    async for event in stream:
        if event.type == "token":
            break
    await stream.aclose()  # type: ignore[attr-defined]
    for _ in range(1500):  # wait on the simulator's state (30 s at most on a loaded machine)
        if sim.stats()["chat"]["in_flight"] == 0:
            break
        await asyncio.sleep(0.02)
    assert sim.stats()["chat"]["in_flight"] == 0


async def test_server_errors_raise_typed_errors_not_answers(sim: Any, tmp_path: Path) -> None:
    # Simulated chat that always fails with 500.
    rag = await local_embeddings_rag(sim, tmp_path, max_retries=1)
    sim.configure(error_fraction=1.0)
    with pytest.raises(ProviderServerError) as info:
        await rag.query_async("How much is the 2025 library budget?")
    assert info.value.status_code == 500
    # The rewrite failed twice (1 retry) and was skipped with a warning; the answer failed twice and raised.
    assert sim.stats()["chat"]["errors"] == 4
    events = [e async for e in rag.stream_async("How much is the 2025 library budget?")]
    assert [e.type for e in events] == ["sources", "error"]
    assert events[-1].data["type"] == "ProviderServerError"


async def test_failed_rewrite_degrades_to_the_original_question_with_a_warning(
    sim: Any, tmp_path: Path
) -> None:
    rag = make_rag(sim, tmp_path, max_retries=0)
    await rag.index_documents_async([SAMPLE_CORPUS])
    original = rag.llm.complete  # type: ignore[union-attr]
    calls = 0

    async def failing_first(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ProviderServerError("rewrite exploded", status_code=503)
        return await original(*args, **kwargs)

    rag.llm.complete = failing_first  # type: ignore[union-attr, method-assign]
    response = await rag.query_async("How much is the 2025 library budget?")
    assert response.metadata["rewrite"] == "failed"
    assert "rewrite exploded" in response.metadata["warnings"][0]
    assert response.rewritten_queries == ["How much is the 2025 library budget?"]
    assert response.citations


async def test_stream_reports_a_provider_failure_as_an_error_event(rag: AgenticRAG, sim: Any) -> None:
    with another_api_key(sim):
        events = [e async for e in rag.stream_async("How much is the 2025 library budget?")]
    assert [e.type for e in events] == ["error"]
    assert events[0].data["type"] == "AuthenticationError"


async def test_wrong_api_key_raises_authentication_error_without_retrying(rag: AgenticRAG, sim: Any) -> None:
    with another_api_key(sim):
        with pytest.raises(AuthenticationError):
            await rag.query_async("How much is the 2025 library budget?")
        assert sim.stats()["total"]["unauthorized"] == 1


async def test_rate_limited_provider_is_survived_by_retrying(sim: Any, tmp_path: Path) -> None:
    # Only chat meets the limit; 16 questions against 4 slots must all be answered.
    rag = await local_embeddings_rag(sim, tmp_path, max_retries=30)
    sim.configure(chat_ms=50, max_in_flight=4, retry_after=0.05)
    responses = await asyncio.gather(*(rag.query_async(f"library budget {i}?") for i in range(16)))
    stats = sim.stats()
    assert stats["chat"]["rate_limited"] > 0
    assert stats["chat"]["peak_in_flight"] <= 4
    assert all(r.metadata["answer_type"] == "llm" and r.citations for r in responses)


@pytest.mark.parametrize(
    "model", ["anthropic:claude-sim", "bedrock:anthropic.claude-sim-v1:0", "openai:sim-chat"]
)
def test_every_provider_answers_through_the_sync_facade(
    model: str, sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Local embeddings; the chat model speaks each provider's wire format. Sync API, so the portal loop runs it.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "sim")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sim-secret")
    base_url = sim.base_url if model.startswith("openai:") else sim.url
    rag = AgenticRAG(
        VectorStore(str(tmp_path), collection_name="p"),
        EmbeddingModel(),
        llm_config=LLMConfig(model=model, base_url=base_url, api_key="sim", region="us-east-1"),
    )
    try:
        assert rag.index_documents([SAMPLE_CORPUS]).ok
        response = rag.query("When is glass collected for recycling?")
        assert response.metadata["answer_type"] == "llm" and response.metadata["rewrite"] == "ok"
        assert response.metadata["llm"] == model
        assert [c.number for c in response.citations] == [1, 2]
        assert response.metadata["usage"]["completion_tokens"] > 0
        events = list(rag.stream("When is glass collected for recycling?"))
        assert events[-1].type == "done" and events[-1].data["answer"] == response.answer
    finally:
        rag.close()


async def reranking_rag(
    sim: Any, store_dir: Path, retrieval: RetrievalConfig, reranker: RerankerConfig
) -> AgenticRAG:
    """The sample corpus indexed through the simulator, then queried with these retrieval and reranker configs."""
    indexed = make_rag(sim, store_dir)
    await indexed.index_documents_async([SAMPLE_CORPUS])
    return AgenticRAG(
        indexed.vector_store,
        indexed.embedding_model,
        llm=indexed.llm,
        retrieval_config=retrieval,
        reranker_config=reranker,
    )


async def test_an_llm_reranker_scores_every_fused_candidate_inside_the_pipeline(
    sim: Any, tmp_path: Path
) -> None:
    rag = await reranking_rag(
        sim,
        tmp_path,
        RetrievalConfig(top_k=6, rerank_top_k=3, use_query_rewriting=False),
        RerankerConfig(kind="llm", max_concurrency=4),
    )
    sim.reset()
    response = await rag.query_async("When is glass collected?")
    candidates = response.metadata["num_candidates"]
    assert candidates >= 4
    assert response.metadata["reranker"] == "llm:openai:sim-chat"
    # One scoring call per candidate (none capped), then the answer.
    assert sim.stats()["chat"]["requests"] == candidates + 1
    assert len(response.retrieved_chunks) == 3
    # The simulator scores by word overlap (0-10): the kept chunks carry those scores, best first.
    scores = [chunk.score for chunk in response.retrieved_chunks]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1.0


async def test_a_failing_reranker_keeps_the_retrieval_order_with_a_warning(sim: Any, tmp_path: Path) -> None:
    rag = await reranking_rag(
        sim, tmp_path, RetrievalConfig(use_query_rewriting=False, rerank_top_k=2), RerankerConfig(kind="llm")
    )
    plain = await rag.retrieve_async("When is glass collected?")
    assert rag.reranker.name.startswith("llm:")
    rag.reranker = FailingReranker()  # a 503 that outlived the adapter's retries
    response = await rag.query_async("When is glass collected?")
    assert response.metadata["rerank"] == "failed"
    assert any("reranking failed" in w for w in response.metadata["warnings"])
    assert [c.id for c in response.retrieved_chunks] == [c.id for c in plain[:2]]


class FailingReranker:
    name = "failing"

    async def rerank(self, query: str, candidates: Any, *, top_k: int) -> Any:
        raise ProviderServerError("overloaded", status_code=503, provider="sim")
