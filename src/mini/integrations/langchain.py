"""`MiniRetriever`: an `AgenticRAG` as a LangChain retriever, for LCEL chains and agents (extra `langchain`)."""

from __future__ import annotations

from typing import Any

from mini.errors import MissingDependencyError
from mini.rag import AgenticRAG
from mini.types import RetrievalResult

try:
    from langchain_core.callbacks import (
        AsyncCallbackManagerForRetrieverRun,
        CallbackManagerForRetrieverRun,
    )
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
except ImportError as exc:
    raise MissingDependencyError("mini.integrations.langchain", "langchain", "langchain-core") from exc

__all__ = ["MiniRetriever", "to_document"]


def to_document(hit: RetrievalResult) -> Document:
    """A LangChain `Document` for one hit: the chunk's text, and its metadata plus `id` and `score`."""
    return Document(page_content=hit.text, metadata={**hit.metadata, "id": hit.id, "score": hit.score})


class MiniRetriever(BaseRetriever):
    """Retrieves with `rag.search_async` (rewrite, retrieve, rerank: the chunks `query` would answer from).

        retriever = MiniRetriever(rag=rag, top_k=5)
        chain = {"context": retriever | format_docs, "question": RunnablePassthrough()} | prompt | llm

    `ainvoke` awaits the search on the caller's loop (no thread hop); `invoke` goes through the sync twin,
    which works anywhere, inside a running loop (Jupyter) included. `top_k`, `filter` and `mode` are
    per-retriever; None means the RAG's configured default.
    """

    rag: AgenticRAG
    top_k: int | None = None
    filter: dict[str, Any] | None = None
    mode: str | None = None

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        hits = self.rag.search(query, top_k=self.top_k, filter=self.filter, mode=self.mode)
        return [to_document(hit) for hit in hits]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        hits = await self.rag.search_async(query, top_k=self.top_k, filter=self.filter, mode=self.mode)
        return [to_document(hit) for hit in hits]
