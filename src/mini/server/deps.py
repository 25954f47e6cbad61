"""What routes share: the app's components (created once in the lifespan), authentication, input limits."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from fastapi import Request

from mini.server.errors import ApiError

if TYPE_CHECKING:
    from mini.rag import AgenticRAG
    from mini.server.settings import ServerSettings


def get_rag(request: Request) -> AgenticRAG:
    rag: AgenticRAG = request.app.state.rag
    return rag


def get_settings(request: Request) -> ServerSettings:
    settings: ServerSettings = request.app.state.settings
    return settings


def state(request: Request, name: str) -> Any:
    """Another component the lifespan put on `app.state` (sessions, jobs, ...)."""
    return getattr(request.app.state, name)


async def require_api_key(request: Request) -> None:
    """With MINI_API_KEYS set, every route but /health needs `Authorization: Bearer <key>` (or `X-API-Key`)."""
    keys = get_settings(request).keys()
    if not keys:
        return
    given = request.headers.get("x-api-key", "")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        given = token.strip()
    # Constant-time comparison against every key: no timing hint about which prefix matched.
    if not given or not any(hmac.compare_digest(given.encode(), key.encode()) for key in keys):
        raise ApiError(401, "unauthorized", "missing or invalid API key", {"WWW-Authenticate": "Bearer"})


def check_question(question: str, settings: ServerSettings) -> str:
    """The question, stripped; 422 if empty or longer than `max_question_chars`."""
    text = question.strip() if isinstance(question, str) else ""
    if not text:
        raise ApiError(422, "invalid_input", "the question is empty")
    if len(text) > settings.max_question_chars:
        raise ApiError(
            422,
            "invalid_input",
            f"the question is {len(text)} characters; the limit is {settings.max_question_chars}",
        )
    return text
