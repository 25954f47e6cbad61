"""mini-rag 0.1.3's spellings of `AgenticRAG` calls, routed onto the new methods (issue 19, MIGRATING.md).

Only calls written the 0.1.3 way come here (`mini._deprecation.legacy_keywords` picks them by keyword), so
the new methods keep their signatures and return types: `index_document(document_path=...)` returns a chunk
count as 0.1.3 did, `index_document(path)` an `IngestReport` (`metadata=` is the new API's too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from mini._deprecation import warn_renamed
from mini.errors import DocumentError, InvalidInputError
from mini.rerankers.base import Reranker
from mini.types import Document

if TYPE_CHECKING:
    from mini.config import ObservabilityConfig, RerankerConfig
    from mini.ingest.report import IngestReport
    from mini.rag import AgenticRAG
    from mini.types import RAGResponse

QUERY_KEYWORDS = frozenset({"query", "return_sources"})
INDEX_DOCUMENT_KEYWORDS = frozenset({"document_path"})
INDEX_DOCUMENTS_KEYWORDS = frozenset({"document_paths"})


def given_reranker(reranker: Any, config: RerankerConfig) -> Reranker | None:
    """`AgenticRAG(reranker=...)` as the pipeline's `Reranker`: 0.1.3's `RerankerConfig(custom_reranker=...)`
    means the same, and a 0.1.3 `BaseReranker` (ours or a user's subclass) is adapted."""
    if reranker is None:
        reranker = config.custom
    if reranker is None or isinstance(reranker, Reranker):
        return reranker
    from mini.reranker import as_reranker

    return as_reranker(reranker)


def export_to_langfuse(config: ObservabilityConfig) -> None:
    """0.1.3's `ObservabilityConfig(enabled=True, public_key=, secret_key=, host=)`: spans go to that Langfuse,
    as they did there (`mini.tracing.configure_langfuse`; with the keys in the environment this is automatic)."""
    if config.enabled and config.public_key and config.secret_key:
        from mini import tracing

        tracing.configure_langfuse(
            public_key=config.public_key, secret_key=config.secret_key, host=config.host
        )


class ResponseMetadata(dict[str, Any]):
    """`RAGResponse.metadata`: a plain dict that also answers 0.1.3's renamed keys (warning once)."""

    RENAMED: ClassVar[dict[str, str]] = {"num_retrieved": "num_candidates"}

    def __missing__(self, key: str) -> Any:
        new = self.RENAMED.get(key)
        if new is None or new not in self:
            raise KeyError(key)
        warn_renamed(f'response.metadata["{key}"]', f'response.metadata["{new}"]')
        return self[new]


async def legacy_query(
    rag: AgenticRAG,
    question: str | None = None,
    *,
    query: str | None = None,
    return_sources: bool = True,
    **options: Any,
) -> RAGResponse:
    """`query(query=..., top_k=..., rerank_top_k=..., return_sources=...)`."""
    if query is not None:
        warn_renamed("AgenticRAG.query(query=...)", "AgenticRAG.query(question)")
        if question is not None:
            raise InvalidInputError("give the question once: query(question), not also query=")
        question = query
    if question is None:
        raise InvalidInputError("query() needs a question: rag.query('...')")
    response = await rag.query_async(question, **options)
    if not return_sources:
        warn_renamed("AgenticRAG.query(return_sources=False)", "ignoring response.retrieved_chunks")
        response.retrieved_chunks = []
    return response


def _chunk_count(report: IngestReport) -> int:
    """The chunks the indexed documents now have in the store (0.1.3 returned the count it inserted); a failed
    file raises, as it did in 0.1.3."""
    if report.failures:
        failure = report.failures[0]
        raise DocumentError(failure.path, failure.reason)
    return report.chunks_added + report.chunks_unchanged


async def legacy_index_documents(
    rag: AgenticRAG,
    items: Sequence[str | Path | Document] | None = None,
    *,
    document_paths: Sequence[str | Path | Document] | None = None,
    **options: Any,
) -> int:
    """`index_documents(document_paths=[...])` -> the number of chunks (0.1.3)."""
    warn_renamed(
        "AgenticRAG.index_documents(document_paths=...) -> int",
        "AgenticRAG.index_documents(paths) -> IngestReport",
    )
    paths = items if items is not None else document_paths
    if paths is None:
        raise InvalidInputError("index_documents() needs a list of paths")
    return _chunk_count(await rag.index_documents_async(paths, **options))


async def legacy_index_document(
    rag: AgenticRAG,
    document: str | Path | Document | None = None,
    *,
    document_path: str | Path | Document | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> int:
    """`index_document(document_path=..., metadata=...)` -> the number of chunks (0.1.3)."""
    warn_renamed(
        "AgenticRAG.index_document(document_path=...) -> int",
        "AgenticRAG.index_document(path) -> IngestReport",
    )
    path = document if document is not None else document_path
    if path is None:
        raise InvalidInputError("index_document() needs a path")
    return _chunk_count(await rag.index_documents_async([path], metadata=metadata))


async def stats(rag: AgenticRAG) -> dict[str, Any]:
    """0.1.3's `get_stats()` keys, from the new objects."""
    config = rag.retrieval_config
    return {
        "total_chunks": await rag.vector_store.count_async(),
        "vector_store": repr(rag.vector_store),
        "embedding_model": repr(rag.embedding_model),
        "llm_model": rag.llm_name,
        "query_rewriting": config.use_query_rewriting and rag.llm is not None,
        "reranking": config.use_reranking,
        "reranker": rag.pipeline.reranker_name(),
        "top_k": config.top_k,
        "rerank_top_k": config.rerank_top_k,
    }
