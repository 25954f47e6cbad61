"""`mini.integrations.llamaindex.MiniRetriever` driving a real LlamaIndex query engine (MockLLM), offline."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from llama_index.core.llms.mock import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine

from mini import AgenticRAG
from mini.integrations.llamaindex import MiniRetriever
from tests.integrations.conftest import GLASS_ANSWER, GLASS_QUESTION


def engine(rag: AgenticRAG) -> RetrieverQueryEngine:
    # MockLLM answers with the prompt it got, so the answer shows the context the retriever supplied.
    return RetrieverQueryEngine.from_args(MiniRetriever(rag, top_k=1), llm=MockLLM())


async def test_query_engine_aquery_answers_from_the_expected_chunk(
    rag: AgenticRAG, search_calls: list[Any]
) -> None:
    response = await engine(rag).aquery(GLASS_QUESTION)
    assert search_calls == [
        (asyncio.get_running_loop(), threading.current_thread())
    ]  # awaited, no thread hop
    [node] = response.source_nodes
    [hit] = await rag.search_async(GLASS_QUESTION, top_k=1)  # after the check above: the spy records it too
    assert (node.node.node_id, node.score, node.node.metadata) == (hit.id, hit.score, hit.metadata)
    assert node.node.metadata["source"] == "recycling.md"
    assert GLASS_ANSWER in str(response)


def test_query_engine_query_answers_from_the_expected_chunk(rag: AgenticRAG) -> None:
    response = engine(rag).query(GLASS_QUESTION)
    assert [node.node.metadata["source"] for node in response.source_nodes] == ["recycling.md"]
    assert GLASS_ANSWER in str(response)
