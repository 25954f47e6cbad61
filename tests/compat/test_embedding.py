"""mini-rag 0.1.3's `mini.embedding` (`EmbeddingModel`, `EmbeddingConfig`) against the simulated provider."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import mini
from mini.chunker import Chunker
from mini.embedding import EmbeddingConfig, EmbeddingModel
from mini.errors import ConfigurationError
from tests.compat._fresh import fresh_warnings  # noqa: F401  (autouse fixture)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the 0.1.3 names warn by design


def model_on(sim: Any, **options: Any) -> EmbeddingModel:
    return EmbeddingModel(api_key="not-needed", base_url=sim.base_url, model="sim-embed", **options)


def test_embed_chunks_takes_chunk_objects_or_strings_alike(sim: Any) -> None:
    model = model_on(sim)
    chunks = Chunker().chunk("Budget for education.\n\nBudget for roads and bridges.")
    from_objects = model.embed_chunks(chunks)
    from_strings = model.embed_chunks([c.text for c in chunks])
    model.close()
    assert len(from_objects) == len(chunks)
    assert all(isinstance(v, list) and isinstance(v[0], float) for v in from_objects)
    np.testing.assert_allclose(from_objects, from_strings, rtol=1e-6)


def test_embed_query_returns_one_vector_of_floats(sim: Any) -> None:
    model = model_on(sim)
    vector = model.embed_query("What is the budget?")
    model.close()
    assert isinstance(vector, list) and len(vector) == 384
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


async def test_async_names_of_0_1_3_are_aliases_that_warn_once(sim: Any) -> None:
    model = model_on(sim)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        query = await model.aembed_query("budget")
        await model.aembed_query("budget")
        chunks = await model.aembed_chunks(["budget"])
    assert query == await model.embed_query_async("budget")
    await model.aclose()
    np.testing.assert_allclose(chunks[0], query, rtol=1e-6)
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(messages) == 2
    assert "embed_query_async" in messages[0] and "embed_chunks_async" in messages[1]
    assert all(w.filename == __file__ for w in caught)


def test_config_object_and_the_environment_configure_the_model(sim: Any, monkeypatch: Any) -> None:
    config = EmbeddingConfig(api_key="k", base_url=sim.base_url, model="sim-embed", timeout=5, max_retries=0)
    configured = EmbeddingModel(config=config)
    assert len(configured.embed_query("hello")) == 384
    configured.close()
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
    monkeypatch.setenv("EMBEDDING_MODEL", "text-embedding-3-small")
    model = EmbeddingModel(dimensions=64)  # 0.1.3's zero-argument form, with its `dimensions`
    assert model.config.model == "text-embedding-3-small" and model.config.api_key == "from-env"
    assert model.name == "openai:text-embedding-3-small"
    assert len(model.embed_query("hello")) == 64  # `dimensions` reached the provider
    model.close()


def test_a_missing_api_key_is_a_configuration_error(monkeypatch: Any) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        EmbeddingModel(base_url="http://127.0.0.1:9/v1")


def test_it_is_a_new_embedding_model_and_warns_once_on_construction(sim: Any) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, _second = model_on(sim), model_on(sim)
    assert isinstance(first, mini.EmbeddingModel)
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(messages) == 1 and 'mini.EmbeddingModel("openai:<model>"' in messages[0]
    assert "sim-embed" in repr(first)
