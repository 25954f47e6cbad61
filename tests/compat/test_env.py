"""mini-rag 0.1.3's environment variables: read after the MINI_* names, which win when both are set."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mini.config import RerankerConfig, load_settings
from tests.compat._fresh import fresh_warnings  # noqa: F401
from tests.query.conftest import SIM_KEY


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [("MILVUS_URI", "MINI_URI", "uri"), ("EMBEDDING_MODEL", "MINI_EMBEDDING_MODEL", "embedding_model")],
)
def test_0_1_3_variable_sets_the_knob_and_ours_wins(
    old: str, new: str, field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(new, raising=False)
    monkeypatch.setenv(old, "from-0.1.3")
    assert getattr(load_settings(), field) == "from-0.1.3"
    monkeypatch.setenv(new, "from-mini")
    assert getattr(load_settings(), field) == "from-mini"


def test_milvus_token_is_the_store_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILVUS_TOKEN", "user:pass")
    token = load_settings().store_token
    assert token is not None and token.get_secret_value() == "user:pass"


def test_without_embedding_model_the_default_stays_offline_even_with_an_openai_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert load_settings().embedding_model.startswith("local:")


def test_embedding_model_with_openai_variables_embeds_over_that_endpoint(
    sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mini import EmbeddingModel

    monkeypatch.setenv("EMBEDDING_MODEL", "sim-embed")
    monkeypatch.setenv("OPENAI_API_KEY", SIM_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)

    async def embed() -> list[float]:
        model = EmbeddingModel()
        try:
            return await model.embed_query_async("education budget")
        finally:
            await model.aclose()

    vector = asyncio.run(embed())
    assert len(vector) > 0
    assert sim.stats()["embeddings"]["responses_ok"] == 1


def test_cohere_api_key_reaches_the_cohere_reranker(monkeypatch: pytest.MonkeyPatch) -> None:
    from mini.rerankers.factory import create_reranker

    monkeypatch.setenv("COHERE_API_KEY", "co-key")
    reranker = create_reranker(RerankerConfig(kind="cohere"))
    assert reranker.name.startswith("cohere:")


def test_langfuse_variables_fill_langfuse_config(monkeypatch: pytest.MonkeyPatch) -> None:
    import mini
    from mini import tracing

    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf")
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(
        tracing, "configure_langfuse", lambda **kw: calls.append(kw)
    )  # no global provider here
    with pytest.warns(DeprecationWarning, match="LANGFUSE_PUBLIC_KEY"):
        config = mini.LangfuseConfig(enabled=True)
    assert (config.public_key, config.secret_key, config.host) == (
        "pk-lf",
        "sk-lf",
        "https://cloud.langfuse.com",
    )
    assert calls == [{"public_key": "pk-lf", "secret_key": "sk-lf", "host": "https://cloud.langfuse.com"}]
