"""Every error leaves the server as JSON `{"type": ..., "message": ...}` with a fitting status, never a stack trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mini.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DocumentError,
    InvalidInputError,
    MiniError,
    ProviderError,
    RateLimitError,
)

log = logging.getLogger("mini.server")


class ApiError(Exception):
    """Raised by routes for a client-facing error: `status`, a short snake_case `type`, a human `message`."""

    def __init__(self, status: int, type: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.headers = headers


def error_response(
    status: int, type: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"type": type, "message": message}, status_code=status, headers=headers)


def status_for(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and error type for a library error."""
    if isinstance(exc, InvalidInputError):
        return 422, "invalid_input"
    if isinstance(exc, DocumentError):
        return 400, "document_error"
    if isinstance(exc, RateLimitError):
        return 429, "rate_limited"
    if isinstance(exc, AuthenticationError | BadRequestError):
        # The server's own provider credentials or model are wrong: the client's request was fine.
        return 502, "provider_rejected"
    if isinstance(exc, ProviderError):
        return 502, "provider_error"
    if isinstance(exc, ConfigurationError):
        return 500, "configuration_error"
    return 500, "store_error" if type(exc).__name__.startswith("Store") else "internal_error"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.type, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
            parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
        return error_response(422, "invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        return error_response(exc.status_code, kind.get(exc.status_code, "http_error"), str(exc.detail))

    @app.exception_handler(MiniError)
    async def _mini(request: Request, exc: MiniError) -> JSONResponse:
        status, kind = status_for(exc)
        headers = None
        if isinstance(exc, RateLimitError) and exc.retry_after:
            headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
        if status >= 500:
            log.warning("%s %s failed: %s", request.method, request.url.path, exc)
        return error_response(status, kind, str(exc), headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error (see the server log)")
