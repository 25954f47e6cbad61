"""Names that several layers check against (settings, config objects, the pipeline, the reranker factory), in
one leaf module: importing it imports nothing else of mini, so none of them depends on another for a list."""

from __future__ import annotations

from typing import Literal

Mode = Literal["dense", "keyword", "hybrid"]
RETRIEVAL_MODES: tuple[Mode, ...] = ("dense", "keyword", "hybrid")

# Spellings people use for each reranker kind. "rrf": keep the fused retrieval order, i.e. no reranking stage.
RERANKER_ALIASES = {
    "none": "none",
    "passthrough": "none",
    "pass-through": "none",
    "rrf": "none",
    "llm": "llm",
    "cross-encoder": "cross-encoder",
    "cross_encoder": "cross-encoder",
    "crossencoder": "cross-encoder",
    "cohere": "cohere",
}
RERANKER_SPELLINGS = ("none", "passthrough", "rrf", "llm", "cross-encoder", "cohere")  # shown in errors
