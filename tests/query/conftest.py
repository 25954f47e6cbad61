"""The pipeline wired to the simulated OpenAI-compatible provider (chat and embeddings over real HTTP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mini import AgenticRAG, EmbeddingModel, LLMConfig, VectorStore
from tests.conftest import SAMPLE_CORPUS

SIM_KEY = "sim"


def make_rag(sim: Any, store_dir: Path, **llm: Any) -> AgenticRAG:
    return AgenticRAG(
        VectorStore(str(store_dir), collection_name="sim"),
        EmbeddingModel("openai:sim-embed", base_url=sim.base_url, api_key=SIM_KEY, dimension=384),
        llm_config=LLMConfig(model="sim-chat", base_url=sim.base_url, api_key=SIM_KEY, **llm),
    )


@pytest.fixture
async def rag(sim: Any, tmp_path: Path) -> AgenticRAG:
    """The sample corpus indexed through the simulator, its stats reset afterwards."""
    rag = make_rag(sim, tmp_path)
    report = await rag.index_documents_async([SAMPLE_CORPUS])
    assert report.ok, report.failures
    sim.reset()
    return rag
