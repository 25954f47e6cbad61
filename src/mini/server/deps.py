"""What routes share: the app's components (created once in the lifespan), authentication, input limits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from mini.server.errors import ApiError
from mini.server.guard import UNAUTHORIZED, authenticated

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


# Declared for the OpenAPI schema: /docs then shows both ways to send a key (its "Authorize" button).
_BEARER = HTTPBearer(auto_error=False, description="One of MINI_API_KEYS, as `Authorization: Bearer <key>`.")
_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="One of MINI_API_KEYS.")


async def require_api_key(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)] = None,
    _api_key: Annotated[str | None, Security(_API_KEY)] = None,
) -> None:
    """With MINI_API_KEYS set, every route but /health and the chat page needs `Authorization: Bearer <key>`
    (or `X-API-Key`). The server's `Guard` middleware already refused the request before its body was read;
    this dependency documents the schemes and keeps a router safe if it is mounted without the guard."""
    if not authenticated(request.headers, get_settings(request).keys()):
        raise ApiError(*UNAUTHORIZED)


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
