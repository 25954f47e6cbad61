"""Every error leaves the server as JSON `{"type": ..., "message": ...}` with a fitting status, never a stack trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mini import errors as err

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


# Every class of `mini.errors`, mapped to the status and type a client sees. Looked up along the exception's
# MRO, so a subclass added later falls back to its parent's entry (and a test insists every class is listed).
STATUS_BY_ERROR: dict[type[err.MiniError], tuple[int, str]] = {
    err.MiniError: (500, "internal_error"),
    err.UsageError: (500, "internal_error"),  # the server called the library the wrong way: our bug
    err.InvalidInputError: (422, "invalid_input"),
    err.EmptyQuestionError: (422, "invalid_input"),
    err.DocumentNotFoundError: (404, "not_found"),  # a source that is not indexed (nothing was deleted)
    err.UnsupportedFilterError: (422, "invalid_input"),  # the client's filter; another one may work
    err.ConfigurationError: (500, "configuration_error"),
    err.MissingDependencyError: (500, "configuration_error"),
    err.ModelNotFoundError: (500, "configuration_error"),
    err.DocumentError: (400, "document_error"),
    err.UnsupportedFormatError: (400, "document_error"),
    err.DocumentParseError: (400, "document_error"),
    err.BudgetExceededError: (500, "budget_exceeded"),
    err.StructuredOutputError: (502, "invalid_model_output"),  # the upstream model answered unusably
    err.StoreError: (500, "store_error"),
    err.DimensionMismatchError: (500, "store_error"),  # the server's embedding model does not fit its store
    err.DuplicateIdError: (409, "conflict"),
    err.UnsupportedOperationError: (501, "unsupported_operation"),
    err.ProviderError: (502, "provider_error"),
    err.ProviderConnectionError: (502, "provider_error"),
    err.ProviderTimeoutError: (504, "provider_timeout"),
    err.ProviderStatusError: (502, "provider_error"),
    # The server's own provider credentials or model are wrong: the client's request was fine.
    err.AuthenticationError: (502, "provider_rejected"),
    err.BadRequestError: (502, "provider_rejected"),
    err.RateLimitError: (429, "rate_limited"),
    err.ProviderServerError: (502, "provider_error"),
}


def status_for(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and error type for a library error (500 `internal_error` for anything else)."""
    for cls in type(exc).__mro__:
        found = STATUS_BY_ERROR.get(cls)
        if found is not None:
            return found
    return 500, "internal_error"


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

    @app.exception_handler(err.MiniError)
    async def _mini(request: Request, exc: err.MiniError) -> JSONResponse:
        status, kind = status_for(exc)
        headers = None
        if isinstance(exc, err.RateLimitError) and exc.retry_after:
            headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
        if status >= 500:
            log.warning("%s %s failed: %s", request.method, request.url.path, exc)
        return error_response(status, kind, str(exc), headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error (see the server log)")
