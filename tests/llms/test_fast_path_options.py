"""What the fast path (our aiohttp client) gained to match the SDKs, asserted at the simulator: Azure OpenAI by
configuration, proxies from the environment, callable keys, gateway headers and query parameters, JSON-schema
structured outputs and refusals as typed errors."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import BaseModel

from mini import AgenticRAG, EmbeddingModel, VectorStore
from mini.config import LLMConfig
from mini.errors import ConfigurationError, RefusalError
from mini.llms.base import LLM, create_llm, json_schema_format
from mini.testing.sim import SimServer
from tests.aiohttp_app import serving
from tests.conftest import SAMPLE_CORPUS

KEY = "fast-key"
USER = [{"role": "user", "content": "When is glass collected?"}]


class Answer(BaseModel):
    day: str
    citations: list[int]


class Loose(BaseModel):
    day: str
    note: str | None = None


def _llm(sim: SimServer, provider: str = "openai", **options: Any) -> LLM:
    if provider == "anthropic":
        return create_llm(LLMConfig("anthropic:claude-sim", base_url=sim.url, **options))
    return create_llm(LLMConfig("openai:sim-chat", base_url=sim.base_url, **options))


async def test_azure_by_configuration_chat_and_embeddings(sim: SimServer) -> None:
    sim.configure(api_key=KEY)
    azure: dict[str, Any] = {"base_url": sim.url, "api_version": "2024-10-21", "api_key": KEY}
    llm = create_llm(LLMConfig("azure:sim-chat", **azure))
    assert llm.name == "azure:sim-chat"
    assert (await llm.complete(USER)).text.startswith("Simulated answer")
    vectors = await EmbeddingModel("azure:sim-embed", dimension=384, batch_window_ms=0, **azure).embed_async(
        ["a"]
    )
    assert vectors.shape == (1, 384)
    seen = sim.requests()
    assert [r["path"] for r in seen] == [
        "/openai/deployments/sim-chat/chat/completions",
        "/openai/deployments/sim-embed/embeddings",
    ]
    assert all(r["query"] == "api-version=2024-10-21" for r in seen)
    assert all(r["headers"]["api-key"] == KEY and "authorization" not in r["headers"] for r in seen)
    with pytest.raises(ConfigurationError, match="api_version"):
        create_llm(LLMConfig("azure:sim-chat", base_url=sim.url, api_key=KEY))


async def test_callable_keys_are_called_per_request_sync_and_async(sim: SimServer) -> None:
    counter = itertools.count(1)

    def rotating() -> str:  # sync: called in a worker thread (token providers may do I/O)
        return f"key-{next(counter)}"

    async def async_key() -> str:
        return f"akey-{next(counter)}"

    openai_llm = _llm(sim, api_key=rotating)
    for _ in range(3):
        await openai_llm.complete(USER)
    anthropic_llm = _llm(sim, "anthropic", api_key=async_key)
    assert "".join([d.text async for d in anthropic_llm.stream(USER)])
    embedder = EmbeddingModel("openai:sim-embed", base_url=sim.base_url, api_key=rotating, batch_window_ms=0)
    await embedder.embed_async(["glass"])
    seen = [r["headers"] for r in sim.requests()]
    assert [h["authorization"] for h in seen[:3]] == ["Bearer key-1", "Bearer key-2", "Bearer key-3"]
    assert seen[3]["x-api-key"] == "akey-4" and seen[4]["authorization"] == "Bearer key-5"


async def test_default_headers_and_query_reach_the_provider(sim: SimServer) -> None:
    gateway: dict[str, Any] = {
        "default_headers": {"x-gateway-team": "search"},
        "default_query": {"tenant": "t1"},
    }
    await _llm(sim, api_key=KEY, **gateway).complete(USER)
    await _llm(sim, "anthropic", api_key=KEY, **gateway).complete(USER)
    embedder = EmbeddingModel(
        "openai:sim-embed", base_url=sim.base_url, api_key=KEY, batch_window_ms=0, **gateway
    )
    await embedder.embed_async(["glass"])
    seen = sim.requests()
    assert len(seen) == 3
    assert all(r["headers"]["x-gateway-team"] == "search" and r["query"] == "tenant=t1" for r in seen)


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[str, list[str]]]:
    """A loopback HTTP forward proxy: forwards each request to the URL it names and records that URL."""
    seen: list[str] = []
    hop_by_hop = {"host", "proxy-connection", "connection", "content-length", "transfer-encoding"}

    async def forward(request: web.Request) -> web.Response:
        target = f"http://{request.headers['Host']}{request.rel_url}"
        seen.append(target)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in hop_by_hop}
        async with (
            aiohttp.ClientSession() as session,
            session.request(request.method, target, headers=headers, data=await request.read()) as upstream,
        ):
            body = await upstream.read()
            return web.Response(status=upstream.status, body=body, content_type=upstream.content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    async with serving(app) as address:
        yield f"http://{address}", seen


async def test_proxies_from_the_environment_are_used_and_no_proxy_excludes(
    sim: SimServer, proxy: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = proxy
    monkeypatch.setenv("HTTP_PROXY", url)
    monkeypatch.setenv("HTTPS_PROXY", url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    llm = _llm(sim, api_key=KEY)
    assert (await llm.complete(USER)).text.startswith("Simulated answer")
    assert seen == [f"{sim.base_url}/chat/completions"] and sim.stats()["chat"]["requests"] == 1
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    await llm.complete(USER)
    assert len(seen) == 1 and sim.stats()["chat"]["requests"] == 2  # straight to the provider


async def test_response_format_gives_parsed_structured_output(sim: SimServer) -> None:
    completion = await _llm(sim).complete(USER, response_format=Answer)
    assert Answer.model_validate_json(completion.text).citations == [1]
    streamed = "".join([d.text async for d in _llm(sim).stream(USER, response_format=Answer)])
    assert Answer.model_validate_json(streamed).day


def test_json_schema_format_is_strict_only_when_the_schema_allows() -> None:
    strict = json_schema_format(Answer)["json_schema"]
    assert strict["strict"] is True and strict["schema"]["additionalProperties"] is False
    loose = json_schema_format(Loose)[
        "json_schema"
    ]  # an optional field: strict mode would change its meaning
    assert "strict" not in loose and "additionalProperties" not in loose["schema"]


async def test_agent_structured_output_repairs_with_response_format(sim: SimServer, tmp_path: Path) -> None:
    embedder = EmbeddingModel("openai:sim-embed", base_url=sim.base_url, dimension=384)
    rag = AgenticRAG(VectorStore(str(tmp_path / "s"), collection_name="t"), embedder, llm=_llm(sim))
    assert (await rag.index_documents_async([SAMPLE_CORPUS])).ok
    # Prose first; the repair is not scripted: only a request carrying the schema gets JSON from the simulator.
    sim.script([{"content": "The day is Wednesday [1]."}])
    response = await rag.agent_query_async("Which day?", output_model=Answer)
    assert response.metadata["output"]["citations"] == [1]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("streamed", [False, True])
async def test_a_refusal_is_a_typed_error_never_an_empty_answer(
    sim: SimServer, provider: str, streamed: bool
) -> None:
    sim.script([{"refusal": "I can't help with that."}])
    llm = _llm(sim, provider)
    with pytest.raises(RefusalError) as caught:
        if streamed:
            async for _ in llm.stream(USER):
                pass
        else:
            await llm.complete(USER)
    assert caught.value.refusal == "I can't help with that." and caught.value.provider == provider
    assert sim.stats()["total"]["requests"] == 1  # not retried
