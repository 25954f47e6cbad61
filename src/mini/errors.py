"""Every error Mini RAG raises, in one tree.

    MiniError
    ├── UsageError                      the API was called the wrong way (e.g. a sync twin from the portal thread)
    ├── InvalidInputError (ValueError)  bad user input, raised before any I/O
    │   ├── EmptyQuestionError          empty or whitespace-only question
    │   ├── DocumentNotFoundError       no indexed document has that source; `.sources` names them
    │   └── UnsupportedFilterError      a valid filter this store backend cannot express
    ├── ConfigurationError              settings that cannot work
    │   ├── MissingDependencyError      an optional extra is not installed (the message names it)
    │   └── ModelNotFoundError          the bundled embedding model is not installed (the message says how)
    ├── DocumentError                   a file could not be turned into text; `.path` names it
    │   ├── UnsupportedFormatError      unknown file type
    │   └── DocumentParseError          known type, unreadable or corrupt content
    │       └── DocumentLimitError      over a parsing limit (expanded size, text, pages, nesting); `.limit`
    ├── BudgetExceededError             an agent run hit its turn, token or time budget (`.transcript`)
    ├── StructuredOutputError           an agent's answer did not parse into the requested model
    ├── SharedStateUnavailableError     the shared state store (Redis, MINI_REDIS_URL) cannot be reached
    ├── IngestWorkerError               a Ray task reading a group of files failed as a whole (each file reported)
    ├── StoreError                      the vector store failed
    │   ├── DimensionMismatchError      vectors do not fit the collection's dimension
    │   ├── DuplicateIdError            `insert` was given ids that already exist (use `upsert`)
    │   └── UnsupportedOperationError   this backend (or collection) cannot do that, e.g. keyword search
    └── ProviderError                   a remote model (LLM, embeddings) call failed; `.provider` names it
        │                               (also `.model`, `.request_id`, `.hint`)
        ├── RefusalError                the model declined to answer (a safety refusal); `.refusal` its words
        ├── ProviderConnectionError     could not reach the provider
        │   └── ProviderTimeoutError    no answer within the timeout
        └── ProviderStatusError         the provider answered with an error status; `.status_code`
            ├── AuthenticationError     401/403
            ├── BadRequestError         400/404/422: the request itself is wrong, retrying will not help
            ├── RateLimitError          429; `.retry_after` seconds when the provider said
            └── ProviderServerError     5xx, overloaded

Adapters translate their SDK's exceptions into these at the boundary and always `raise ... from exc`,
so the original error stays attached.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging


class MiniError(Exception):
    """Base class of every error raised by Mini RAG."""


class UsageError(MiniError):
    """The API was used in a way that cannot work."""


class InvalidInputError(MiniError, ValueError):
    """User input was rejected before any I/O happened."""


class EmptyQuestionError(InvalidInputError):
    """The question is empty or only whitespace."""


class DocumentNotFoundError(InvalidInputError):
    """No indexed document has the given source(s), so nothing was deleted; `.sources` lists them."""

    def __init__(self, sources: str | list[str], detail: str = "") -> None:
        self.sources = [sources] if isinstance(sources, str) else list(sources)
        names = ", ".join(repr(s) for s in self.sources)
        message = f"no indexed document with source {names}"
        super().__init__(f"{message}; {detail}" if detail else message)


class ConfigurationError(MiniError):
    """The configuration cannot work as given."""


class MissingDependencyError(ConfigurationError, ImportError):
    """An optional dependency is missing; the message names the extra that provides it."""

    def __init__(self, what: str, extra: str, package: str | None = None) -> None:
        self.extra = extra
        hint = f'pip install "mini-rag[{extra}]"'
        if package:
            hint += f" (or: pip install {package})"
        super().__init__(f"{what} needs the optional extra '{extra}': {hint}")


class ModelNotFoundError(ConfigurationError):
    """The local embedding model could not be found."""


class DocumentError(MiniError):
    """A document could not be loaded."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class UnsupportedFormatError(DocumentError):
    """The file type is not supported."""


class DocumentParseError(DocumentError):
    """The file type is supported but its content could not be read."""


class DocumentLimitError(DocumentParseError):
    """The file would expand past a parsing limit (a DOCX member's size, PDF text or pages, HTML size, JSON
    nesting); `.limit` names the `ParseLimits` field (or "" for a fixed limit). Refused while reading, before
    the memory or time is spent."""

    def __init__(self, path: str, reason: str, *, limit: str = "") -> None:
        super().__init__(path, reason)
        self.limit = limit


class BudgetExceededError(MiniError):
    """An agent run hit `max_turns`, its token budget or its time budget before answering.

    `.kind` is "turns", "tokens" or "time"; `.transcript` the conversation so far (JSON-able messages);
    `.trace` the tool calls made (name, arguments, timings, outcome); `.partial_answer` the last model text.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        transcript: list[dict[str, Any]] | None = None,
        trace: list[dict[str, Any]] | None = None,
        partial_answer: str = "",
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.transcript = transcript or []
        self.trace = trace or []
        self.partial_answer = partial_answer


class StructuredOutputError(MiniError):
    """The model's final answer did not parse into the requested output model, even after one repair."""


class SharedStateUnavailableError(MiniError):
    """The shared state of several servers (Redis at `MINI_REDIS_URL`: sessions, jobs) cannot be reached in time.

    Transient: the server keeps running and answers again once Redis is back (HTTP 503)."""


class IngestWorkerError(MiniError):
    """A Ray task reading a group of files failed as a whole (timed out, or its worker was lost beyond Ray's
    retries): each of its files is in the ingestion report with this error; a re-run retries them."""


class StoreError(MiniError):
    """The vector store failed."""


class UnsupportedOperationError(StoreError):
    """The store backend, or this collection, cannot do the operation (e.g. keyword search); nothing was run."""


class UnsupportedFilterError(InvalidInputError):
    """The store backend cannot express this filter (e.g. a string range on Qdrant); nothing was run."""


class DimensionMismatchError(StoreError):
    """Vectors do not have the collection's dimension."""

    def __init__(self, expected: int, got: int, where: str = "") -> None:
        self.expected = expected
        self.got = got
        place = f" ({where})" if where else ""
        hint = ""
        if expected == 1536 and got != expected:
            # mini-rag 0.1.3 embedded with OpenAI's text-embedding-3-small (1536); we default to a local model.
            hint = (
                "; a collection made by mini-rag 0.1.3 needs its embedding model: set "
                "EMBEDDING_MODEL=text-embedding-3-small with OPENAI_API_KEY (MIGRATING.md)"
            )
        super().__init__(
            f"vector dimension {got} does not match the collection's dimension {expected}{place}{hint}"
        )


class DuplicateIdError(StoreError):
    """`insert` was given ids that already exist."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        shown = ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")
        super().__init__(f"{len(ids)} id(s) already exist: {shown}; use upsert() to replace them")


class ProviderError(MiniError):
    """A remote model call failed.

    `provider` and `model` name what was called, `request_id` is the provider's id for the failed request
    (quote it to their support), `hint` says what the user can do about it. All are optional.
    """

    default_hint = ""

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        model: str | None = None,
        request_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.request_id = request_id
        self.hint = self.default_hint if hint is None else hint
        self.detail = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.provider + (f" ({self.model})" if self.model else "")
        text = f"{where}: {self.detail}" if where else self.detail
        if self.request_id:
            text += f" [request id {self.request_id}]"
        if self.hint:
            text += f". Hint: {self.hint}"
        return text

    def with_context(self, *, model: str | None = None, request_id: str | None = None) -> ProviderError:
        """Fill in what the transport did not know (the adapter knows the model); returns self."""
        self.model = self.model or model
        self.request_id = self.request_id or request_id
        self.args = (self._render(),)
        return self


class RefusalError(ProviderError):
    """The model refused the request (OpenAI `message.refusal`, Anthropic `stop_reason: "refusal"`); never
    retried, and never turned into an empty answer. `.refusal` is what the model said, if anything."""

    default_hint = "the model declined on safety grounds; rephrase the request or use another model"

    def __init__(self, refusal: str = "", *, provider: str = "", model: str | None = None) -> None:
        self.refusal = refusal
        super().__init__(
            f"the model refused: {refusal or '(no reason given)'}", provider=provider, model=model
        )


class ProviderConnectionError(ProviderError):
    """The provider could not be reached."""

    default_hint = "check the base URL and the network; the request is retried automatically"


class ProviderTimeoutError(ProviderConnectionError):
    """The provider did not answer in time."""

    default_hint = "raise the timeout (LLMConfig(timeout=...)) or lower max_concurrency"


class ProviderStatusError(ProviderError):
    """The provider answered with an error status."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 0,
        provider: str = "",
        model: str | None = None,
        request_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.status_code = status_code
        super().__init__(
            f"HTTP {status_code}: {message}" if status_code else message,
            provider=provider,
            model=model,
            request_id=request_id,
            hint=hint,
        )


class AuthenticationError(ProviderStatusError):
    """The provider rejected the credentials (401/403). Never retried."""

    default_hint = (
        "check the API key (OPENAI_API_KEY, ANTHROPIC_API_KEY or AWS credentials) and its permissions"
    )


class BadRequestError(ProviderStatusError):
    """The provider rejected the request (400/404/422); retrying will not help."""

    default_hint = "check the model name and request parameters"


class RateLimitError(ProviderStatusError):
    """The provider is rate limiting (429); `.retry_after` seconds when it said how long to wait."""

    default_hint = "retries are automatic; lower max_concurrency or set requests_per_minute/tokens_per_minute"

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 429,
        retry_after: float | None = None,
        provider: str = "",
        model: str | None = None,
        request_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(
            message, status_code=status_code, provider=provider, model=model, request_id=request_id, hint=hint
        )


class ProviderServerError(ProviderStatusError):
    """The provider failed on its side (5xx, or an overloaded/unavailable model)."""

    default_hint = "a provider-side failure; retried automatically"


def status_error(
    status_code: int,
    message: str,
    *,
    provider: str = "",
    retry_after: float | None = None,
    model: str | None = None,
    request_id: str | None = None,
) -> ProviderStatusError:
    """The most specific `ProviderStatusError` for an HTTP status."""
    if status_code == 429:
        return RateLimitError(
            message, retry_after=retry_after, provider=provider, model=model, request_id=request_id
        )
    cls: type[ProviderStatusError] = ProviderStatusError
    if status_code in (401, 403):
        cls = AuthenticationError
    elif status_code >= 500:
        cls = ProviderServerError
    elif 400 <= status_code < 500:
        cls = BadRequestError
    return cls(message, status_code=status_code, provider=provider, model=model, request_id=request_id)


def error_payload(exc: BaseException) -> dict[str, Any]:
    """The data of a stream's `error` event for `exc`: `{"type", "message"}` (every stream answers failures in
    this one shape; log it with `log_failure`)."""
    return {"type": type(exc).__name__, "message": str(exc)}


def log_failure(log: logging.Logger, what: str, exc: BaseException) -> None:
    """Log an exception that is answered (a stream's `error` event) instead of raised. The caller's own bad
    input is INFO, another `MiniError` (a provider down, a store failing) a WARNING, both one line: their
    message says it all. Anything else is a bug, logged with its traceback (which the event does not carry)."""
    if isinstance(exc, InvalidInputError | DocumentError):
        log.info("%s: %s: %s", what, type(exc).__name__, exc)
    elif isinstance(exc, MiniError):
        log.warning("%s: %s: %s", what, type(exc).__name__, exc)
    else:
        log.error("%s: %s: %s", what, type(exc).__name__, exc, exc_info=exc)
