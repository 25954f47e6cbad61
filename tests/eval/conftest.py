"""Shared by the evaluation tests: the demo corpus indexed once per session with the bundled local model."""

from __future__ import annotations

from pathlib import Path

import pytest

from mini import AgenticRAG, EmbeddingModel, LLMConfig, VectorStore
from tests.conftest import REPO, SAMPLE_CORPUS

SAMPLE_SET = REPO / "examples" / "eval" / "questions.jsonl"
COLLECTION = "eval_demo"


@pytest.fixture(scope="session")
def offline_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An on-disk LanceDB store holding `examples/corpus/` (local embeddings); open it with `offline_rag`."""
    store = tmp_path_factory.mktemp("eval_store")
    rag = offline_rag(store)
    report = rag.index_documents([SAMPLE_CORPUS])
    assert report.ok, report.failures
    rag.close()
    return store


def offline_rag(store: Path) -> AgenticRAG:
    return AgenticRAG(
        VectorStore(str(store), collection_name=COLLECTION),
        EmbeddingModel(),
        llm_config=LLMConfig(model="none"),
    )
