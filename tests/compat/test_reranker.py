"""mini-rag 0.1.3's `mini.reranker`: sync rerankers of plain strings, thin over `mini.rerankers`."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import mini
from mini.errors import ConfigurationError, InvalidInputError, MissingDependencyError
from mini.reranker import (
    BaseReranker,
    CohereReranker,
    LLMReranker,
    RerankResult,
    SentenceTransformerReranker,
    create_reranker,
)
from tests.compat._fresh import fresh_warnings  # noqa: F401
from tests.query.conftest import SIM_KEY

DOCUMENTS = [
    "The weather today is sunny.",
    "Machine learning is a subset of artificial intelligence that learns from data.",
    "Python is a programming language.",
]


def test_the_0_1_3_names_are_top_level_too() -> None:
    for name in (
        "BaseReranker",
        "RerankResult",
        "CohereReranker",
        "SentenceTransformerReranker",
        "LLMReranker",
    ):
        assert getattr(mini, name) is getattr(mini.reranker, name)
    assert mini.create_reranker is create_reranker


def test_llm_reranker_scores_with_an_openai_clients_endpoint(sim: Any) -> None:
    client = SimpleNamespace(base_url=sim.base_url, api_key=SIM_KEY)  # what openai.OpenAI exposes
    with pytest.warns(DeprecationWarning, match=r"mini\.rerankers\.LLMReranker"):
        reranker = LLMReranker(client=client, model="sim-chat")
    results = reranker.rerank("What is machine learning?", DOCUMENTS, top_k=2)
    assert len(results) == 2 and all(isinstance(r, RerankResult) for r in results)
    assert results[0].index == 1 and results[0].text == DOCUMENTS[1]
    assert 0.0 <= results[1].score <= results[0].score <= 1.0


def test_create_reranker_none_keeps_the_order() -> None:
    with pytest.warns(DeprecationWarning, match="create_reranker"):
        reranker = create_reranker("none")
    assert isinstance(reranker, BaseReranker)
    assert [r.index for r in reranker.rerank("q", DOCUMENTS)] == [0, 1, 2]
    assert reranker.rerank("q", []) == []


def test_create_reranker_names_the_known_types() -> None:
    with pytest.warns(DeprecationWarning), pytest.raises(InvalidInputError, match="sentence-transformer"):
        create_reranker("magic")


def test_cohere_reranker_needs_a_key_and_reads_cohere_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.warns(DeprecationWarning), pytest.raises(ConfigurationError, match="COHERE_API_KEY"):
        CohereReranker()
    monkeypatch.setenv("COHERE_API_KEY", "from-env")
    reranker = CohereReranker(model="rerank-multilingual-v3.0")
    assert reranker.model == "rerank-multilingual-v3.0"
    assert "rerank-multilingual-v3.0" in repr(reranker)


def test_sentence_transformer_reranker_names_the_extra_when_missing() -> None:
    pytest.importorskip("mini.rerankers.cross_encoder")
    import importlib.util

    if importlib.util.find_spec("sentence_transformers") is not None:
        pytest.skip("sentence-transformers is installed")
    with pytest.warns(DeprecationWarning), pytest.raises(MissingDependencyError, match="torch"):
        SentenceTransformerReranker()
