"""`MiniRetriever`: an `AgenticRAG` as a LlamaIndex retriever, for query engines and agents (extra `llamaindex`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mini.errors import MissingDependencyError
from mini.rag import AgenticRAG
from mini.types import RetrievalResult

try:
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
except ImportError as exc:
    raise MissingDependencyError("mini.integrations.llamaindex", "llamaindex", "llama-index-core") from exc

__all__ = ["MiniRetriever", "to_node"]


def to_node(hit: RetrievalResult) -> NodeWithScore:
    """A scored `TextNode` for one hit: the chunk's id, text and metadata (with `source`)."""
    return NodeWithScore(
        node=TextNode(id_=hit.id, text=hit.text, metadata=dict(hit.metadata)), score=hit.score
    )


class MiniRetriever(BaseRetriever):
    """Retrieves with `rag.search_async` (rewrite, retrieve, rerank: the chunks `query` would answer from).

        engine = RetrieverQueryEngine.from_args(MiniRetriever(rag, top_k=5), llm=llm)

    `aretrieve`/`aquery` await the search on the caller's loop; `retrieve`/`query` go through the sync
    twin, which works anywhere, inside a running loop included. `top_k`, `filter` and `mode`: None means the
    RAG's configured default.
    """

    def __init__(
        self,
        rag: AgenticRAG,
        *,
        top_k: int | None = None,
        filter: Mapping[str, Any] | None = None,
        mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # callback_manager, verbose, ...
        self.rag = rag
        self.top_k = top_k
        self.filter = filter
        self.mode = mode

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self.rag.search(query_bundle.query_str, top_k=self.top_k, filter=self.filter, mode=self.mode)
        return [to_node(hit) for hit in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = await self.rag.search_async(
            query_bundle.query_str, top_k=self.top_k, filter=self.filter, mode=self.mode
        )
        return [to_node(hit) for hit in hits]
