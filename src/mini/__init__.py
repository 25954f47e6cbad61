"""Mini RAG: async-first retrieval-augmented generation, offline by default."""

from mini._lazy import lazy_attributes
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

# mini-rag 0.1.3's other top-level names (MIGRATING.md): loaded on first use, not in `__all__`, so neither
# `import mini` nor `from mini import *` loads the compatibility modules; each warns once when used.
LEGACY_NAMES = {
    "DocumentLoader": "loader",
    "Chunker": "chunker",
    "EmbeddingConfig": "embedding",
    "MilvusConfig": "store",
    "LangfuseConfig": "observability",
    "BaseReranker": "reranker",
    "RerankResult": "reranker",
    "CohereReranker": "reranker",
    "SentenceTransformerReranker": "reranker",
    "LLMReranker": "reranker",
    "create_reranker": "reranker",
}

__getattr__ = lazy_attributes(__name__, LEGACY_NAMES)
