"""`mini.integrations.llamaindex.MiniRetriever` driving a real LlamaIndex query engine (MockLLM), offline."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from llama_index.core.llms.mock import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine

from mini import AgenticRAG
from mini.integrations.llamaindex import MiniRetriever
from tests.integrations.conftest import GLASS_ANSWER, GLASS_QUESTION


def engine(rag: AgenticRAG) -> RetrieverQueryEngine:
    # MockLLM answers with the prompt it got, so the answer shows the context the retriever supplied.
    return RetrieverQueryEngine.from_args(MiniRetriever(rag, top_k=1), llm=MockLLM())


async def test_query_engine_aquery_answers_from_the_expected_chunk(
    rag: AgenticRAG, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[asyncio.AbstractEventLoop, threading.Thread]] = []
    search_async = rag.search_async

    async def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append((asyncio.get_running_loop(), threading.current_thread()))
        return await search_async(*args, **kwargs)

    monkeypatch.setattr(rag, "search_async", spy)
    response = await engine(rag).aquery(GLASS_QUESTION)
    assert seen == [(asyncio.get_running_loop(), threading.current_thread())]  # awaited, no thread hop
    [node] = response.source_nodes
    [hit] = await search_async(GLASS_QUESTION, top_k=1)
    assert (node.node.node_id, node.score, node.node.metadata) == (hit.id, hit.score, hit.metadata)
    assert node.node.metadata["source"] == "recycling.md"
    assert GLASS_ANSWER in str(response)


def test_query_engine_query_answers_from_the_expected_chunk(rag: AgenticRAG) -> None:
    response = engine(rag).query(GLASS_QUESTION)
    assert [node.node.metadata["source"] for node in response.source_nodes] == ["recycling.md"]
    assert GLASS_ANSWER in str(response)
