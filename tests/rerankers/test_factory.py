"""Choosing a reranker from configuration, including options `RerankerConfig` may not have yet."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mini.config import RerankerConfig
from mini.errors import ConfigurationError
from mini.rerankers import (
    CohereReranker,
    CrossEncoderReranker,
    LLMReranker,
    PassThroughReranker,
    Reranker,
    create_reranker,
)
from mini.testing.fakes import ScriptedLLM


@dataclass(frozen=True)
class FullConfig:
    """The fields the factory reads, as `RerankerConfig` is to grow them."""

    kind: str = "none"
    model: str | None = None
    model_path: str | None = None
    api_key: str | None = None
    base_url: str | None = None
    timeout: float | None = None
    max_concurrency: int | None = None
    batch_size: int | None = None
    device: str | None = None


@pytest.mark.parametrize("kind", ["none", "passthrough", "RRF", " None "])
def test_none_and_rrf_keep_the_retrieval_order(kind: str) -> None:
    assert isinstance(create_reranker(RerankerConfig(kind=kind)), PassThroughReranker)


def test_the_default_config_needs_nothing() -> None:
    reranker = create_reranker(RerankerConfig())
    assert isinstance(reranker, Reranker) and reranker.name == "none"


def test_llm_kind_uses_the_given_model_and_needs_one() -> None:
    llm = ScriptedLLM(lambda _: "5")
    reranker = create_reranker(FullConfig(kind="llm", max_concurrency=4), llm)  # type: ignore[arg-type]
    assert isinstance(reranker, LLMReranker)
    assert reranker.llm is llm and reranker.max_concurrency == 4 and reranker.name == "llm:fake:scripted"
    assert create_reranker(RerankerConfig(kind="llm"), llm).max_concurrency == 16  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match="needs a chat model"):
        create_reranker(RerankerConfig(kind="llm"))


def test_cross_encoder_kind_needs_a_model_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", types.ModuleType("sentence_transformers"))
    with pytest.raises(ConfigurationError, match="model_path"):
        create_reranker(RerankerConfig(kind="cross-encoder"))
    config: Any = FullConfig(kind="cross_encoder", model_path=str(tmp_path), batch_size=8, device="cpu")
    reranker = create_reranker(config)
    assert isinstance(reranker, CrossEncoderReranker)
    assert (reranker.model_path, reranker.batch_size, reranker.device) == (tmp_path, 8, "cpu")


def test_cohere_kind_reads_model_key_and_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COHERE_API_KEY", raising=False)
    monkeypatch.delenv("CO_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="COHERE_API_KEY"):
        create_reranker(RerankerConfig(kind="cohere"))
    config: Any = FullConfig(kind="cohere", model="rerank-v4.0", api_key="k", base_url="http://127.0.0.1:9")
    reranker = create_reranker(config)
    assert isinstance(reranker, CohereReranker)
    assert (reranker.name, reranker.base_url) == ("cohere:rerank-v4.0", "http://127.0.0.1:9")


def test_an_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match="cross-encoder"):
        create_reranker(RerankerConfig(kind="colbert"))
