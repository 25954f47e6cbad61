"""Every error leaves the server as JSON `{"type": ..., "message": ...}` with a fitting status, never a stack trace,
and never internals: exception classes, paths, SQL and upstream addresses go to the log (`public_error`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

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
    err.DocumentLimitError: (400, "document_error"),  # over a parsing limit: the message names it
    err.BudgetExceededError: (500, "budget_exceeded"),
    err.StructuredOutputError: (502, "invalid_model_output"),  # the upstream model answered unusably
    err.SharedStateUnavailableError: (503, "unavailable"),  # Redis down: transient, retry later
    # A Ray task failed as a whole: the cluster's fault, not the request's.
    err.IngestWorkerError: (502, "ingest_worker_error"),
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
    # The model declined this request's content: the client may rephrase (never an empty 200 answer).
    err.RefusalError: (422, "model_refused"),
    err.ProviderServerError: (502, "provider_error"),
}


def status_for(exc: BaseException | type[BaseException]) -> tuple[int, str]:
    """The HTTP status and error type for a library error or its class (500 `internal_error` for anything
    else)."""
    cls = exc if isinstance(exc, type) else type(exc)
    for base in cls.__mro__:
        found = STATUS_BY_ERROR.get(base)
        if found is not None:
            return found
    return 500, "internal_error"


# What a client reads for a server-side failure (5xx), and for the 4xx types whose text is not ours (a rate
# limit's message is the provider's, with its account details): one fixed sentence per type. The details
# (exception classes, file paths, SQL, upstream addresses, library internals) go to the server log only.
_PUBLIC_MESSAGES = {
    "internal_error": "internal server error (see the server log)",
    "configuration_error": "the server is misconfigured (see the server log)",
    "store_error": "the vector store failed (see the server log)",
    "unavailable": "the server's shared state (Redis) is unavailable; retry later",
    "budget_exceeded": "the request exceeded the server's budget",
    "invalid_model_output": "the model's answer could not be used (see the server log)",
    "unsupported_operation": "the server's store does not support this operation",
    "provider_error": "the model provider failed (see the server log)",
    "provider_timeout": "the model provider did not answer in time",
    "provider_rejected": "the model provider refused the server's request (see the server log)",
    "rate_limited": "the model provider is rate limiting the server; retry later",
    "model_refused": "the model declined to answer this request; rephrase it",
    # Fallbacks of the types below, for a stream's error whose message is not at hand.
    "invalid_input": "invalid input",
    "conflict": "conflict",
    "document_error": "the document could not be read",
    "not_found": "not found",
}
# The 4xx types whose messages we write ourselves, about the client's own input: kept as they are.
_OWN_MESSAGES = {"invalid_input", "conflict", "document_error", "not_found"}


def _shown(kind: str, own: str | None) -> str:
    """The message a client sees for an error of `kind`: `own` (our text about the client's input) for the
    types that keep theirs, else the type's fixed sentence. The one rule of `public_error` and `public_event`."""
    if kind in _OWN_MESSAGES and own is not None:
        return own or kind
    return _PUBLIC_MESSAGES.get(kind, _PUBLIC_MESSAGES["internal_error"])


def public_error(exc: BaseException) -> tuple[int, str, str]:
    """(status, type, message) a client may see for `exc`: our messages about the client's input keep their
    text; any other failure gets a fixed sentence per type, its details are the log's."""
    status, kind = status_for(exc)
    if isinstance(exc, err.DocumentNotFoundError):
        # Its detail may name the store's location (an empty store): the sources are what the client sent.
        names = ", ".join(repr(s) for s in exc.sources)
        return status, kind, f"no indexed document with source {names}; nothing was deleted"
    return status, kind, _shown(kind, str(exc))


def _error_class(name: object) -> type[BaseException] | None:
    """The class of our error tree named `name` (subclasses defined elsewhere, e.g. a backend's, included)."""
    pending: list[type[BaseException]] = [err.MiniError]
    while pending:
        cls = pending.pop()
        if cls.__name__ == name:
            return cls
        pending.extend(cls.__subclasses__())
    return None


def public_event(data: object) -> dict[str, str]:
    """A stream's `error` event as a client may see it: the library's `{"type": <class name>, "message"}`
    (`mini.errors.error_payload`; logged where it was made) mapped like `public_error`: our type, and our
    message only for the client's own input."""
    fields = data if isinstance(data, Mapping) else {}
    cls = _error_class(fields.get("type"))
    if cls is None:
        return {"type": "internal_error", "message": _shown("internal_error", None)}
    _, kind = status_for(cls)
    # A missing document's message may name the store's location; its sources are not in the payload.
    own = None if cls is err.DocumentNotFoundError else str(fields.get("message") or "")
    return {"type": kind, "message": _shown(kind, own)}


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
        status, kind, message = public_error(exc)
        headers = None
        if isinstance(exc, err.RateLimitError) and exc.retry_after:
            headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
        if kind not in _OWN_MESSAGES:  # the details the client does not get: logged once, here
            log.warning("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return error_response(status, kind, message, headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error (see the server log)")
