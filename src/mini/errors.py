"""Every error Mini RAG raises, in one tree.

    MiniError
    ├── UsageError                      the API was called the wrong way (e.g. a sync twin from the portal thread)
    ├── InvalidInputError (ValueError)  bad user input, raised before any I/O
    │   └── EmptyQuestionError          empty or whitespace-only question
    ├── ConfigurationError              settings that cannot work
    │   ├── MissingDependencyError      an optional extra is not installed (the message names it)
    │   └── ModelNotFoundError          the bundled embedding model is not installed (the message says how)
    ├── DocumentError                   a file could not be turned into text; `.path` names it
    │   ├── UnsupportedFormatError      unknown file type
    │   └── DocumentParseError          known type, unreadable or corrupt content
    ├── StoreError                      the vector store failed
    │   ├── DimensionMismatchError      vectors do not fit the collection's dimension
    │   └── DuplicateIdError            `insert` was given ids that already exist (use `upsert`)
    └── ProviderError                   a remote model (LLM, embeddings) call failed; `.provider` names it
        ├── ProviderConnectionError     could not reach the provider
        │   └── ProviderTimeoutError    no answer within the timeout
        └── ProviderStatusError         the provider answered with an error status; `.status_code`
            ├── AuthenticationError     401/403
            ├── BadRequestError         400/404/422: the request itself is wrong, retrying will not help
            ├── RateLimitError          429; `.retry_after` seconds when the provider said
            └── ProviderServerError     5xx

Adapters translate their SDK's exceptions into these at the boundary and always `raise ... from exc`,
so the original error stays attached.
"""

from __future__ import annotations


class MiniError(Exception):
    """Base class of every error raised by Mini RAG."""


class UsageError(MiniError):
    """The API was used in a way that cannot work."""


class InvalidInputError(MiniError, ValueError):
    """User input was rejected before any I/O happened."""


class EmptyQuestionError(InvalidInputError):
    """The question is empty or only whitespace."""


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


class StoreError(MiniError):
    """The vector store failed."""


class DimensionMismatchError(StoreError):
    """Vectors do not have the collection's dimension."""

    def __init__(self, expected: int, got: int, where: str = "") -> None:
        self.expected = expected
        self.got = got
        place = f" ({where})" if where else ""
        super().__init__(
            f"vector dimension {got} does not match the collection's dimension {expected}{place}"
        )


class DuplicateIdError(StoreError):
    """`insert` was given ids that already exist."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        shown = ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")
        super().__init__(f"{len(ids)} id(s) already exist: {shown}; use upsert() to replace them")


class ProviderError(MiniError):
    """A remote model call failed."""

    def __init__(self, message: str, *, provider: str = "") -> None:
        self.provider = provider
        super().__init__(f"{provider}: {message}" if provider else message)


class ProviderConnectionError(ProviderError):
    """The provider could not be reached."""


class ProviderTimeoutError(ProviderConnectionError):
    """The provider did not answer in time."""


class ProviderStatusError(ProviderError):
    """The provider answered with an error status."""

    def __init__(self, message: str, *, provider: str = "", status_code: int = 0) -> None:
        self.status_code = status_code
        super().__init__(f"HTTP {status_code}: {message}" if status_code else message, provider=provider)


class AuthenticationError(ProviderStatusError):
    """The provider rejected the credentials (401/403)."""


class BadRequestError(ProviderStatusError):
    """The provider rejected the request (400/404/422); retrying will not help."""


class RateLimitError(ProviderStatusError):
    """The provider is rate limiting (429)."""

    def __init__(
        self, message: str, *, provider: str = "", status_code: int = 429, retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, provider=provider, status_code=status_code)


class ProviderServerError(ProviderStatusError):
    """The provider failed on its side (5xx)."""


def status_error(
    status_code: int, message: str, *, provider: str = "", retry_after: float | None = None
) -> ProviderStatusError:
    """The most specific `ProviderStatusError` for an HTTP status."""
    if status_code == 429:
        return RateLimitError(message, provider=provider, retry_after=retry_after)
    if status_code in (401, 403):
        return AuthenticationError(message, provider=provider, status_code=status_code)
    if status_code >= 500:
        return ProviderServerError(message, provider=provider, status_code=status_code)
    if 400 <= status_code < 500:
        return BadRequestError(message, provider=provider, status_code=status_code)
    return ProviderStatusError(message, provider=provider, status_code=status_code)
