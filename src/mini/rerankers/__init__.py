"""Rerankers: reorder retrieved candidates before generation (pass-through, LLM, cross-encoder, Cohere).

The implementations load lazily (`from mini.rerankers import CohereReranker` imports only what it needs).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from mini.rerankers.base import PassThroughReranker, Reranker
from mini.rerankers.factory import create_reranker

if TYPE_CHECKING:
    from mini.rerankers.cohere import CohereReranker
    from mini.rerankers.cross_encoder import CrossEncoderReranker
    from mini.rerankers.llm import LLMReranker, parse_score

_LAZY = {
    "CohereReranker": "mini.rerankers.cohere",
    "CrossEncoderReranker": "mini.rerankers.cross_encoder",
    "LLMReranker": "mini.rerankers.llm",
    "parse_score": "mini.rerankers.llm",
}

__all__ = [
    "CohereReranker",
    "CrossEncoderReranker",
    "LLMReranker",
    "PassThroughReranker",
    "Reranker",
    "create_reranker",
    "parse_score",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mini.rerankers' has no attribute {name!r}")
