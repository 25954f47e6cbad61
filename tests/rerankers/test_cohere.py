"""The Cohere reranker against a fake Cohere server on 127.0.0.1 (aiohttp, random port; never the internet):
the v2 request body, results mapped back to candidates, splitting long lists, retries and typed errors."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mini.errors import AuthenticationError, ConfigurationError, ProviderError
from mini.rerankers.cohere import CohereReranker, parse_results, rerank_payload
from mini.types import RetrievalResult
from tests.rerankers.conftest import candidates

KEY = "co-secret-key-123"


@dataclass
class FakeCohere:
    """A local stand-in for api.cohere.com's `/v2/rerank`; `refuse` statuses are answered first, in order."""

    server: TestServer | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    refuse: list[int] = field(default_factory=list)
    retry_after: str = "0.3"

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    async def rerank(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append({"body": body, "headers": dict(request.headers), "at": time.monotonic()})
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response({"message": "invalid api token"}, status=401)
        if self.refuse:
            status = self.refuse.pop(0)
            headers = {"Retry-After": self.retry_after} if status == 429 else {}
            return web.json_response({"message": "slow down"}, status=status, headers=headers)
        # Relevance: the share of query words the document contains; Cohere answers best first, top_n of them.
        words = set(body["query"].split())
        scores = [len(words & set(doc.split())) / len(words) for doc in body["documents"]]
        order = sorted(range(len(scores)), key=lambda i: -scores[i])[: body["top_n"]]
        results = [{"index": i, "relevance_score": scores[i]} for i in order]
        return web.json_response(
            {"id": "r1", "results": results, "meta": {"billed_units": {"search_units": 1}}}
        )


@pytest.fixture
async def cohere() -> AsyncIterator[FakeCohere]:
    fake = FakeCohere()
    app = web.Application()
    app.router.add_post("/v2/rerank", fake.rerank)
    fake.server = TestServer(app, host="127.0.0.1", port=0)
    await fake.server.start_server()
    try:
        yield fake
    finally:
        await fake.server.close()


def _hits(texts: list[str]) -> list[RetrievalResult]:
    return [
        RetrievalResult(h.id, text, h.score, h.metadata)
        for h, text in zip(candidates(len(texts)), texts, strict=True)
    ]


async def test_ranks_by_relevance_score_and_sends_the_v2_body(cohere: FakeCohere) -> None:
    reranker = CohereReranker(base_url=cohere.url, api_key=KEY)
    texts = ["paper on monday", "glass bins", "glass collected on wednesday", "glass"]
    ranked = await reranker.rerank("when is glass collected", _hits(texts), top_k=3)
    await reranker.aclose()
    assert [(h.id, h.score) for h in ranked] == [("c2", 0.5), ("c1", 0.25), ("c3", 0.25)]
    [request] = cohere.requests
    assert request["body"] == {
        "model": "rerank-v3.5",
        "query": "when is glass collected",
        "documents": texts,
        "top_n": 3,
    }
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"


async def test_more_than_1000_candidates_are_split_and_merged(cohere: FakeCohere) -> None:
    texts = [f"filler {i}" for i in range(2500)]
    texts[1500] = "glass collected wednesday"
    texts[2400] = "glass"
    reranker = CohereReranker(base_url=cohere.url, api_key=KEY)
    ranked = await reranker.rerank("glass collected wednesday", _hits(texts), top_k=2)
    await reranker.aclose()
    assert [len(r["body"]["documents"]) for r in cohere.requests] == [1000, 1000, 500]
    assert all(r["body"]["top_n"] == 2 for r in cohere.requests)
    assert [h.id for h in ranked] == ["c1500", "c2400"]
    assert ranked[0].score == 1.0


async def test_429_is_retried_after_the_servers_retry_after(cohere: FakeCohere) -> None:
    cohere.refuse = [429]
    reranker = CohereReranker(base_url=cohere.url, api_key=KEY)
    ranked = await reranker.rerank("glass", _hits(["paper", "glass"]), top_k=1)
    await reranker.aclose()
    assert [h.id for h in ranked] == ["c1"]
    first, second = cohere.requests
    assert second["at"] - first["at"] >= 0.3  # Retry-After is a floor
    assert second["headers"].get("x-mini-retry-count") == "1"


async def test_401_is_an_authentication_error_that_never_shows_the_key(cohere: FakeCohere) -> None:
    reranker = CohereReranker(base_url=cohere.url, api_key="wrong-" + KEY)
    with pytest.raises(AuthenticationError) as info:
        await reranker.rerank("glass", _hits(["glass"]), top_k=1)
    await reranker.aclose()
    assert len(cohere.requests) == 1  # not retried
    error = info.value
    assert error.status_code == 401 and error.provider == "cohere" and error.model == "rerank-v3.5"
    assert "COHERE_API_KEY" in str(error)
    for text in (str(error), repr(error), repr(reranker)):
        assert KEY not in text


async def test_the_key_comes_from_the_environment(
    cohere: FakeCohere, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COHERE_API_KEY", KEY)
    reranker = CohereReranker(base_url=cohere.url)
    await reranker.rerank("glass", _hits(["glass"]), top_k=1)
    await reranker.aclose()
    assert cohere.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"


def test_cohere_itself_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COHERE_API_KEY", raising=False)
    monkeypatch.delenv("CO_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="COHERE_API_KEY"):
        CohereReranker()


def test_payload_and_result_parsing_are_pure() -> None:
    payload = rerank_payload("m", "q", ["a", "b"], top_n=5, max_tokens_per_doc=512)
    assert payload == {
        "model": "m",
        "query": "q",
        "documents": ["a", "b"],
        "top_n": 2,
        "max_tokens_per_doc": 512,
    }
    assert parse_results({"results": [{"index": 1, "relevance_score": 0.5}]}, 2) == {1: 0.5}
    with pytest.raises(ProviderError, match="malformed"):
        parse_results({"data": []}, 2)
    with pytest.raises(ProviderError, match="outside"):
        parse_results({"results": [{"index": 2, "relevance_score": 0.5}]}, 2)
