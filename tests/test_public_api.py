"""The public surface: exported names are pinned, every `x_async` has a sync `x` with the same parameters,
and `import mini` is fast and touches no network."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap

import pytest

import mini
from mini import AgenticRAG, EmbeddingModel, VectorStore


def test_exported_names_are_pinned() -> None:
    assert sorted(mini.__all__) == sorted(
        [
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
    )
    for name in mini.__all__:
        assert hasattr(mini, name), name


def test_0_1_3_top_level_names_resolve_lazily_outside_all() -> None:
    # mini-rag 0.1.3's other top-level exports (issue 19): reachable as attributes, deliberately not in
    # `__all__` (a star import must not load the deprecated compatibility modules).
    assert sorted(mini.LEGACY_NAMES) == sorted(
        [
            "BaseReranker",
            "Chunker",
            "CohereReranker",
            "DocumentLoader",
            "EmbeddingConfig",
            "LLMReranker",
            "LangfuseConfig",
            "MilvusConfig",
            "RerankResult",
            "SentenceTransformerReranker",
            "create_reranker",
        ]
    )
    assert not set(mini.LEGACY_NAMES) & set(mini.__all__)
    for name in mini.LEGACY_NAMES:
        assert getattr(mini, name) is not None, name


SEED_METHODS = {
    EmbeddingModel: ["embed_query", "embed_chunks"],
    VectorStore: ["insert", "upsert", "search", "delete", "count", "drop"],
    AgenticRAG: [
        "rewrite_query",
        "retrieve",
        "rerank",
        "generate_answer",
        "query",
        "stream",
        "index_document",
        "index_documents",
    ],
}


@pytest.mark.parametrize("cls", list(SEED_METHODS), ids=lambda c: c.__name__)
def test_seed_methods_exist_in_both_forms(cls: type) -> None:
    for name in SEED_METHODS[cls]:
        assert callable(getattr(cls, name, None)), f"{cls.__name__}.{name}"
        assert callable(getattr(cls, f"{name}_async", None)), f"{cls.__name__}.{name}_async"


@pytest.mark.parametrize("cls", list(SEED_METHODS), ids=lambda c: c.__name__)
def test_every_async_method_has_a_sync_twin_with_the_same_parameters(cls: type) -> None:
    asyncs = [n for n in dir(cls) if n.endswith("_async") and not n.startswith("_")]
    assert asyncs
    for name in asyncs:
        twin = name.removesuffix("_async")
        assert hasattr(cls, twin), f"{cls.__name__}.{name} has no sync twin {twin}"
        async_params = inspect.signature(getattr(cls, name)).parameters
        sync_params = inspect.signature(getattr(cls, twin)).parameters
        assert list(async_params.values()) == list(sync_params.values()), f"{cls.__name__}.{twin}"


def test_import_is_light_and_offline() -> None:
    # A fresh interpreter: sockets that try to connect fail loudly, and heavy modules must not be loaded.
    code = textwrap.dedent(
        """
        import socket, sys, time
        def refuse(*a, **k):
            raise AssertionError("network access during import")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        import mini
        heavy = sorted(m for m in ("numpy", "onnxruntime", "lancedb", "openai", "pyarrow", "tokenizers",
                                   "pydantic", "typer", "rich") if m in sys.modules)
        print(",".join(heavy))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # Not timed (a loaded machine makes any bound flaky): what keeps the import fast is that nothing heavy loads.
    heavy = result.stdout.strip()
    assert heavy == "", f"import mini loaded heavy modules: {heavy}"
