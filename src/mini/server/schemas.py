"""Request and response bodies (pydantic), shown in the OpenAPI docs at /docs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class QueryRequest(BaseModel):
    question: str = Field(description="The question; 1 to MINI_MAX_QUESTION_CHARS characters.")
    top_k: int | None = Field(default=None, ge=1, le=100, description="Chunks retrieved per query.")
    filter: dict[str, Any] | None = Field(
        default=None, description='Metadata filter, e.g. {"source": "a.md"}.'
    )


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
