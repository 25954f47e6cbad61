"""Cohere Rerank (`POST /v2/rerank`) spoken directly over our aiohttp client, under the endpoint's shared limiter.

No cohere SDK: the request is one small JSON body, and the shared limiter and retry policy (429/5xx/timeouts,
Retry-After honoured) are the same as every other provider's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from mini._checks import at_least
from mini._http import HttpClient
from mini._limits import RetryPolicy, endpoint_key, limiter_for
from mini._tasks import gather_all
from mini.errors import AuthenticationError, ConfigurationError, ProviderError
from mini.rerankers._ranking import rank_by_scores
from mini.types import RetrievalResult

PROVIDER = "cohere"
DEFAULT_BASE_URL = "https://api.cohere.com"
DEFAULT_MODEL = "rerank-v3.5"
RERANK_PATH = "/v2/rerank"
API_KEY_ENV = ("COHERE_API_KEY", "CO_API_KEY")  # ours, then the Cohere SDK's name
MAX_DOCUMENTS_PER_REQUEST = 1000  # Cohere's recommended maximum per request; longer lists are split
AUTH_HINT = "check COHERE_API_KEY (or CohereReranker(api_key=...)) and the key's permissions"


def rerank_payload(
    model: str, query: str, documents: Sequence[str], *, top_n: int, max_tokens_per_doc: int | None = None
) -> dict[str, Any]:
    """The request body of `POST /v2/rerank`."""
    payload: dict[str, Any] = {
        "model": model,
        "query": query,
        "documents": list(documents),
        "top_n": min(top_n, len(documents)),
    }
    if max_tokens_per_doc is not None:
        payload["max_tokens_per_doc"] = max_tokens_per_doc
    return payload


def parse_results(data: Any, count: int) -> dict[int, float]:
    """`{"results": [{"index", "relevance_score"}, ...]}` -> {document index: score}; raises on anything else."""
    try:
        scores = {int(item["index"]): float(item["relevance_score"]) for item in data["results"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise ProviderError(f"malformed rerank response: {str(data)[:200]}", provider=PROVIDER) from exc
    if any(not 0 <= index < count for index in scores):
        raise ProviderError(f"rerank response names documents outside 0..{count - 1}", provider=PROVIDER)
    return scores


class CohereReranker:
    """Ranks candidates with a Cohere rerank model; `score` is Cohere's `relevance_score` (in [0, 1]).

    `api_key` defaults to COHERE_API_KEY (or CO_API_KEY); a `base_url` other than Cohere's (a proxy, a
    compatible server) may go without one. Lists longer than `max_documents_per_request` are sent as several
    concurrent requests and merged (relevance scores are per pair, so they compare across requests). Requests
    share the endpoint's limiter (`max_concurrency` in flight, optional `requests_per_minute`) and retry
    429/5xx/timeouts up to `max_retries` times, honouring Retry-After. Construction does no I/O.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        api_key: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 30.0,
        max_concurrency: int = 16,
        max_retries: int = 3,
        requests_per_minute: float | None = None,
        max_documents_per_request: int = MAX_DOCUMENTS_PER_REQUEST,
        max_tokens_per_doc: int | None = None,
    ) -> None:
        at_least(1, max_concurrency=max_concurrency, max_documents_per_request=max_documents_per_request)
        api_key = api_key or next((os.environ[name] for name in API_KEY_ENV if os.environ.get(name)), None)
        base_url = base_url.rstrip("/")
        if not api_key and base_url == DEFAULT_BASE_URL:
            raise ConfigurationError(
                "no API key for the Cohere reranker: set COHERE_API_KEY (or pass api_key=)"
            )
        self.model = model
        self.name = f"cohere:{model}"
        self.base_url = base_url
        self.max_documents_per_request = max_documents_per_request
        self.max_tokens_per_doc = max_tokens_per_doc
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = HttpClient(base_url, provider=PROVIDER, headers=headers, timeout=timeout)
        self._limiter = limiter_for(
            endpoint_key(base_url, api_key),
            max_in_flight=max_concurrency,
            requests_per_minute=requests_per_minute,
        )
        self._policy = RetryPolicy(max_attempts=max_retries + 1)

    def __repr__(self) -> str:
        return f"CohereReranker({self.model!r}, base_url={self.base_url!r})"

    async def _rerank_batch(self, query: str, documents: list[str], top_n: int) -> dict[int, float]:
        payload = rerank_payload(
            self.model, query, documents, top_n=top_n, max_tokens_per_doc=self.max_tokens_per_doc
        )
        try:
            data = await self._limiter.call(
                lambda: self._http.post_json(RERANK_PATH, payload), policy=self._policy
            )
        except ProviderError as exc:
            if isinstance(exc, AuthenticationError) and exc.hint == AuthenticationError.default_hint:
                exc.hint = AUTH_HINT
            exc.with_context(model=self.model)
            raise
        return parse_results(data, len(documents))

    async def rerank(
        self, query: str, candidates: Sequence[RetrievalResult], *, top_k: int
    ) -> list[RetrievalResult]:
        if not candidates or top_k <= 0:
            return []
        texts = [candidate.text for candidate in candidates]
        size = self.max_documents_per_request
        starts = range(0, len(texts), size)
        # Each request returns its own best top_k, so the overall best top_k are among the answers.
        parts = await gather_all(self._rerank_batch(query, texts[s : s + size], top_k) for s in starts)
        scores: list[float | None] = [None] * len(candidates)
        for start, part in zip(starts, parts, strict=True):
            for index, score in part.items():
                scores[start + index] = score
        return rank_by_scores(candidates, scores, top_k=top_k)

    async def aclose(self) -> None:
        await self._http.aclose()
