"""Request and response bodies (pydantic), shown in the OpenAPI docs at /docs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class AnswerOptions(BaseModel):
    """The per-request options of every endpoint that answers (the library's `top_k`, `filter`, `mode`)."""

    top_k: int | None = Field(default=None, ge=1, le=100, description="Chunks retrieved per query.")
    filter: dict[str, Any] | None = Field(
        default=None, description='Metadata filter, e.g. {"source": "a.md"} or {"year": {"$gte": 2020}}.'
    )
    mode: Literal["dense", "keyword", "hybrid"] | None = Field(
        default=None, description="Retrieval legs; default: the server's configured mode (hybrid)."
    )

    def answer_options(self) -> dict[str, Any]:
        return {"top_k": self.top_k, "filter": self.filter, "mode": self.mode}


class QueryRequest(AnswerOptions):
    question: str = Field(description="The question; 1 to MINI_MAX_QUESTION_CHARS characters.")


class Hit(BaseModel):
    number: int
    id: str
    source: str
    score: float
    text: str
    metadata: dict[str, Any]


class CitationOut(BaseModel):
    number: int
    chunk_id: str
    source: str
    text: str
    score: float


class QueryResponse(BaseModel):
    answer: str
    sources: list[Hit]
    citations: list[CitationOut]
    rewritten_queries: list[str]
    timings_ms: dict[str, float]
    metadata: dict[str, Any]


class ErrorBody(BaseModel):
    type: str
    message: str


class Health(BaseModel):
    status: str
    version: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 413, 422, 429, 500, 502)
}
