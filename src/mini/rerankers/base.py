"""The `Reranker` protocol and the pass-through default."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from mini.types import RetrievalResult


@runtime_checkable
class Reranker(Protocol):
    """Reorders candidates for a query, best first, keeping at most `top_k`."""

    name: str

    async def rerank(
        self, query: str, candidates: Sequence[RetrievalResult], *, top_k: int
    ) -> list[RetrievalResult]: ...


class PassThroughReranker:
    """Keeps the retrieval order; cuts to `top_k`."""

    name = "none"

    async def rerank(
        self, query: str, candidates: Sequence[RetrievalResult], *, top_k: int
    ) -> list[RetrievalResult]:
        return list(candidates[:top_k])
