"""Value types that flow through the pipeline: documents, chunks, search results, citations, responses."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class Document:
    """A loaded file (or text given directly) before chunking."""

    text: str
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a document, the unit that is embedded and stored.

    `id` is derived from (source, content hash), so re-ingesting unchanged text yields the same ids.
    """

    id: str
    text: str
    source: str
    index: int
    content_hash: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def store_metadata(self) -> dict[str, Any]:
        """The metadata written to the store next to the vector."""
        return {
            **self.metadata,
            "source": self.source,
            "chunk_index": self.index,
            "content_hash": self.content_hash,
        }


@dataclass(frozen=True, slots=True)
class RetrievalResult:
    """One hit from a vector store search. Higher `score` is better (cosine similarity for dense search; after
    reranking, the reranker's score). `rank`: the 1-based position in an answer's `retrieved_chunks` (None
    elsewhere)."""

    id: str
    text: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)
    rank: int | None = field(default=None, compare=False)

    @property
    def source(self) -> str:
        return str(self.metadata.get("source", ""))

    @property
    def reranked_score(self) -> float:
        """mini-rag 0.1.3's name for the final ranking score: `score` (deprecated)."""
        from mini._deprecation import warn_renamed

        warn_renamed("RetrievalResult.reranked_score", "RetrievalResult.score")
        return self.score

    def as_source(self, number: int) -> dict[str, Any]:
        """The JSON form every surface shows a numbered source in (stream `sources` events, the OpenAI-compatible
        route's `sources` field)."""
        return {
            "number": number,
            "id": self.id,
            "source": self.source,
            "score": self.score,
            "text": self.text,
            "metadata": self.metadata,
        }


@dataclass(frozen=True, slots=True)
class Citation:
    """A `[number]` marker in an answer resolved to the retrieved chunk it points at."""

    number: int
    chunk_id: str
    source: str
    text: str
    score: float


@dataclass(slots=True)
class RAGResponse:
    """The result of `AgenticRAG.query`: the seed's fields plus citations.

    `metadata["timings_ms"]` holds per-stage wall times (rewrite, embed, search, rerank, generate, total).
    """

    answer: str
    original_query: str
    rewritten_queries: list[str]
    retrieved_chunks: list[RetrievalResult]
    context_used: str
    metadata: dict[str, Any] = field(default_factory=dict)
    citations: list[Citation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (for the CLI's --json and the server)."""
        data = asdict(self)
        for hit, raw in zip(data["retrieved_chunks"], self.retrieved_chunks, strict=True):
            hit["source"] = raw.source
        return data


StreamEventType = Literal["sources", "token", "citation", "done", "error", "tool_call", "tool_result"]


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of `stream_async` / the server's SSE stream, in the order of DESIGN.md section 8:
    `sources` -> `token`* -> `citation`* -> `done`, or `error` then the end."""

    type: StreamEventType
    data: Any
