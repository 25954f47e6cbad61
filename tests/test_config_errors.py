"""Invalid options are `InvalidInputError`s (a `MiniError` and still a `ValueError`) with messages saying why."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mini import EmbeddingModel
from mini._limits import Limiter, RateBudget
from mini.config import LLMConfig, RetrievalConfig
from mini.errors import InvalidInputError, MiniError
from mini.ingest.cache import EmbeddingCache
from mini.rerankers.cohere import CohereReranker
from mini.server.jobs import JobManager
from mini.server.sessions import SessionStore


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: LLMConfig(max_concurrency=0), "max_concurrency must be >= 1"),
        (lambda: LLMConfig(timeout=0), "timeout must be > 0"),
        (lambda: LLMConfig(max_retries=-1), "max_retries must be >= 0"),
        (lambda: LLMConfig(requests_per_minute=0), "requests_per_minute must be > 0"),
        (lambda: RetrievalConfig(top_k=0), "top_k must be >= 1"),
        (lambda: RetrievalConfig(num_query_variants=-1), "num_query_variants must be >= 0"),
        (lambda: RetrievalConfig(retrieval_mode="fuzzy"), "retrieval_mode must be dense, keyword or hybrid"),
        (lambda: RetrievalConfig(rrf_k=-1), "rrf_k must be >= 0"),
        (lambda: RetrievalConfig(keyword_weight=-1), "keyword_weight must be >= 0"),
        (lambda: Limiter("x", 0), "max_in_flight must be >= 1"),
        (lambda: RateBudget(0), "per_minute must be > 0"),
        (lambda: EmbeddingCache(max_bytes=-1), "max_bytes must be >= 0"),
        (lambda: CohereReranker(api_key="k", max_concurrency=0), "max_concurrency must be >= 1"),
        (
            lambda: EmbeddingModel("local:all-MiniLM-L6-v2", batch_window_ms=-1),
            "batch_window_ms must be >= 0",
        ),
        (lambda: JobManager(max_concurrent=0, ttl_s=1), "max_concurrent_jobs must be >= 1"),
        (lambda: SessionStore(max_sessions=0, ttl_s=1, max_turns=1), "max_sessions must be >= 1"),
    ],
)
def test_invalid_options_raise_invalid_input_errors(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as raised:
        make()
    assert isinstance(raised.value, MiniError) and isinstance(raised.value, ValueError)
