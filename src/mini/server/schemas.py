"""Request and response bodies (pydantic), shown in the OpenAPI docs at /docs."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_core import PydanticCustomError

from mini._checks import text_problem

# Where a value is in a body, as a linked list from the value up to the root: (parent, key), or None for the
# root. Pushing costs O(1) whatever the depth; the dotted name is built only for the value that is reported.
_Where = tuple[Any, str] | None


def _dotted(where: _Where) -> str:
    keys: list[str] = []
    while where is not None:
        where, key = where
        keys.append(key)
    return ".".join(reversed(keys)) or "the body"


def _surely_clean(data: Any) -> bool:
    """True when no string in `data` can hold a lone surrogate or a NUL, checked at C speed: the JSON encoder
    writes NUL as the escape below and UTF-8 refuses lone surrogates. The walk below costs about 1 µs per value
    on the event loop (half a second for a MiB of small values), so it runs only when this cannot tell."""
    try:
        dumped = json.dumps(data, ensure_ascii=False, check_circular=False)
        dumped.encode("utf-8")
    # Not plain JSON data, a lone surrogate (UnicodeEncodeError is a ValueError), very deep: walk it.
    except (TypeError, ValueError, RecursionError):
        return False
    return "\\u0000" not in dumped


def unusable_text(data: Any) -> str | None:
    """Where the first string of a parsed JSON body that cannot be used as text is (a key or a value, at any
    depth), and why: `"messages.0.content contains a NUL character at position 3"`; None if there is none."""
    if _surely_clean(data):
        return None
    # Iterative, in document order, linear in the body's size: a deep body costs no recursion.
    stack: list[tuple[_Where, Any]] = [(None, data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            problem = text_problem(value)
            if problem is not None:
                return f"{_dotted(where)} {problem}"
        elif isinstance(value, dict):
            for key in value:
                problem = text_problem(key) if isinstance(key, str) else None
                if problem is not None:
                    return f"a key of {_dotted(where)} {problem}"
            stack.extend(((where, str(key)), item) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(((where, str(i)), value[i]) for i in range(len(value) - 1, -1, -1))
    return None


class RequestBody(BaseModel):
    """The base of every JSON request body: a string anywhere in it (questions, messages, filter values,
    metadata, keys, fields the model ignores) that is not usable text, a lone surrogate or a NUL, is a 422
    naming where it is, before any work (it used to fail deep inside an HTTP client or a store, as a 500)."""

    @model_validator(mode="before")
    @classmethod
    def _usable_text(cls, data: Any) -> Any:
        problem = unusable_text(data)
        if problem is not None:
            # The text goes in the context, not the template: a client's key may contain braces.
            raise PydanticCustomError("invalid_text", "{problem}", {"problem": problem})
        return data


class AnswerOptions(RequestBody):
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
    status: str  # "ok", or "degraded" with the reason (e.g. Redis at MINI_REDIS_URL unreachable)
    version: str
    reason: str | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 413, 422, 429, 500, 502)
}
