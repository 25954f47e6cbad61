"""Mini RAG: async-first retrieval-augmented generation, offline by default."""

from mini._version import __version__
from mini.config import LLMConfig, ObservabilityConfig, RerankerConfig, RetrievalConfig
from mini.embeddings.base import EmbeddingModel
from mini.errors import MiniError
from mini.query.batch import BatchResult
from mini.rag import AgenticRAG
from mini.stores.base import VectorStore
from mini.types import Chunk, Citation, Document, RAGResponse, RetrievalResult, StreamEvent

__all__ = [
    "AgenticRAG",
    "BatchResult",
    "Chunk",
    "Citation",
    "Document",
    "EmbeddingModel",
    "LLMConfig",
    "MiniError",
    "ObservabilityConfig",
    "RAGResponse",
    "RerankerConfig",
    "RetrievalConfig",
    "RetrievalResult",
    "StreamEvent",
    "VectorStore",
    "__version__",
]
