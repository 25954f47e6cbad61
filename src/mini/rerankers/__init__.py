"""Rerankers: reorder retrieved candidates before generation (pass-through, LLM, cross-encoder, Cohere).

The implementations load lazily (`from mini.rerankers import CohereReranker` imports only what it needs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mini._lazy import lazy_attributes
from mini.rerankers.base import PassThroughReranker, Reranker
from mini.rerankers.factory import create_reranker

if TYPE_CHECKING:
    from mini.rerankers.cohere import CohereReranker
    from mini.rerankers.cross_encoder import CrossEncoderReranker
    from mini.rerankers.llm import LLMReranker, parse_score

_HOMES = {
    "CohereReranker": "cohere",
    "CrossEncoderReranker": "cross_encoder",
    "LLMReranker": "llm",
    "parse_score": "llm",
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

__getattr__ = lazy_attributes(__name__, _HOMES)
