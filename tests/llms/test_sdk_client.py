"""Your own SDK client (`LLMConfig(client=...)`, `EmbeddingModel(client=...)`) against the simulator: it carries
the requests, while the limiter, retry policy (the SDK's own retries off), typed errors and the pipeline's
streaming stay ours. The full shared LLM contract also passes over SDK clients (run once by hand with SDK
entries in tests/llms/test_contract.py's PROVIDERS; left out of the suite for its time budget)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from mini import AgenticRAG, EmbeddingModel, VectorStore
from mini.config import LLMConfig
from mini.errors import ConfigurationError, RateLimitError, RefusalError
from mini.llms.base import create_llm
from mini.testing.sim import SimServer
from tests.conftest import SAMPLE_CORPUS

KEY = "sdk-key"
USER = [{"role": "user", "content": "When is glass collected?"}]


def _openai_config(sim: SimServer, **options: Any) -> LLMConfig:
    return LLMConfig(
        "openai:sim-chat", client=openai.AsyncOpenAI(base_url=sim.base_url, api_key=KEY), **options
    )


def _anthropic_config(sim: SimServer, **options: Any) -> LLMConfig:
    client = anthropic.AsyncAnthropic(base_url=sim.url, api_key=KEY)
    return LLMConfig("anthropic:claude-sim", client=client, **options)


async def test_openai_client_answers_and_streams_through_agentic_rag(sim: SimServer, tmp_path: Path) -> None:
    sim.configure(api_key=KEY)
    client = openai.AsyncOpenAI(base_url=sim.base_url, api_key=KEY)
    embedder = EmbeddingModel("openai:sim-embed", client=client, dimension=384)
    rag = AgenticRAG(
        VectorStore(str(tmp_path / "store"), collection_name="t"),
        embedder,
        llm_config=LLMConfig("openai:sim-chat", client=client),
    )
    assert (await rag.index_documents_async([SAMPLE_CORPUS])).ok
    response = await rag.query_async("When is glass collected for recycling?")
    assert "first Wednesday" in response.answer and response.metadata["llm"] == "openai:sim-chat"
    tokens = [e.data async for e in rag.stream_async("When is glass collected?") if e.type == "token"]
    assert "first Wednesday" in "".join(tokens)
    seen = sim.requests()
    # Every chat and embeddings request was the SDK's (its own headers), none ours.
    assert seen and all(r["headers"].get("x-stainless-lang") == "python" for r in seen)
    stats = sim.stats()
    assert stats["chat"]["stream_requests"] >= 1 and stats["embeddings"]["requests"] >= 2
    await rag.aclose()
    await client.close()


@pytest.mark.parametrize("which", ["openai", "anthropic", "embeddings"])
async def test_a_429_is_retried_by_our_policy_once_then_raised_typed(sim: SimServer, which: str) -> None:
    sim.configure(rate_limit_fraction=1.0, retry_after=0)
    if which == "embeddings":
        client = openai.AsyncOpenAI(base_url=sim.base_url, api_key=KEY)
        model = EmbeddingModel("openai:sim-embed", client=client, max_retries=1, batch_window_ms=0)
        with pytest.raises(RateLimitError) as caught:
            await model.embed_async(["glass"])
        endpoint = "embeddings"
    else:
        config = (_openai_config if which == "openai" else _anthropic_config)(sim, max_retries=1)
        with pytest.raises(RateLimitError) as caught:
            await create_llm(config).complete(USER)
        endpoint = "chat" if which == "openai" else "messages"
    assert caught.value.retry_after == 0.0 and caught.value.provider in ("openai", "anthropic")
    counters = sim.stats()[endpoint]
    # Two requests: ours (first + one retry, marked by our retry header); none from the SDK's own retries.
    assert counters["requests"] == 2 and counters["retried"] == 1 and counters["rate_limited"] == 2


async def test_anthropic_client_answers_streams_and_refusals_raise(sim: SimServer) -> None:
    llm = create_llm(_anthropic_config(sim))
    assert llm.name == "anthropic:claude-sim"
    answer = await llm.complete(USER)
    assert answer.text.startswith("Simulated answer") and answer.usage.completion_tokens > 0
    streamed = [d.text async for d in llm.stream(USER)]
    assert "".join(streamed) == answer.text
    sim.script([{"refusal": "I can't help with that."}])
    with pytest.raises(RefusalError) as caught:
        await llm.complete(USER)
    assert caught.value.refusal == "I can't help with that."


async def test_azure_client_with_a_token_provider_reaches_the_deployment(sim: SimServer) -> None:
    issued: list[str] = []

    async def token() -> str:
        issued.append(f"entra-{len(issued) + 1}")
        return issued[-1]

    client = openai.AsyncAzureOpenAI(
        azure_endpoint=sim.url, api_version="2024-10-21", azure_ad_token_provider=token
    )
    llm = create_llm(LLMConfig("sim-chat", client=client))
    assert llm.name == "azure:sim-chat"
    assert (await llm.complete(USER)).text.startswith("Simulated answer")
    assert "".join([d.text async for d in llm.stream(USER)]).startswith("Simulated answer")
    seen = sim.requests()
    assert [r["path"] for r in seen] == ["/openai/deployments/sim-chat/chat/completions"] * 2
    assert all("api-version=2024-10-21" in r["query"] for r in seen)
    assert [r["headers"]["authorization"] for r in seen] == ["Bearer entra-1", "Bearer entra-2"]


def test_sync_clients_and_mismatched_models_are_refused_with_the_fix() -> None:
    with pytest.raises(ConfigurationError, match="AsyncOpenAI"):
        create_llm(LLMConfig("openai:m", client=openai.OpenAI(api_key=KEY)))
    with pytest.raises(ConfigurationError, match="'anthropic' model name"):
        create_llm(LLMConfig("openai:m", client=anthropic.AsyncAnthropic(api_key=KEY)))
    # The client is a live object: not part of the config's value.
    client = openai.AsyncOpenAI(api_key=KEY)
    assert LLMConfig("m", client=client) == LLMConfig("m") and "client" not in repr(
        LLMConfig("m", client=client)
    )
