"""Fetching http(s) URLs for ingestion: bounded, timed out, size-limited, retried only when it can help.

`UrlFetcher.fetch(url)` returns the body and the file type the loaders understand ("html", "pdf", ...).
Every failure is a `DocumentParseError` naming the URL (credentials stripped), so a bad URL in a batch is
reported like a corrupt file. Retries follow the provider policy (`mini._limits`): only 429, 5xx, timeouts
and connection errors, full-jitter backoff, `Retry-After` as a floor; the concurrency slot is released while
waiting, so a retrying URL does not hold back the others.
Where a URL may lead is the `FetchPolicy`'s call (`mini.ingest.netguard`): redirects are followed here, hop
by hop, so every hop is checked like the first URL; a refusal is final, never retried.
"""

from __future__ import annotations

import asyncio
import posixpath
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit, urlunsplit

from mini._checks import at_least, positive
from mini._http import parse_retry_after
from mini._limits import RetryPolicy, backoff_delay
from mini._portal import PerLoop
from mini.errors import DocumentParseError, InvalidInputError
from mini.ingest.netguard import FetchPolicy, FetchRefused, GuardedResolver

if TYPE_CHECKING:
    import aiohttp
    from aiohttp.abc import AbstractResolver
    from yarl import URL

__all__ = ["Fetched", "UrlFetcher", "detect_file_type", "is_url", "redact_url"]

DEFAULT_USER_AGENT = "mini-rag (+https://github.com/mini-rag)"
MAX_RETRY_AFTER_S = 30.0  # a server asking for longer than this is not worth waiting for in a batch
_CHUNK = 64 * 1024
# Statuses whose Location is followed (all re-sent as GET: the fetcher only ever GETs).
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

# Media type -> file type. Parameters (charset) are stripped before lookup.
_MEDIA_TYPES = {
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/plain": "txt",
    "text/markdown": "md",
    "text/x-markdown": "md",
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/json": "json",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl",
}
# Same table as the file loaders' suffixes.
_SUFFIXES = {
    ".html": "html",
    ".htm": "html",
    ".txt": "txt",
    ".md": "md",
    ".markdown": "md",
    ".pdf": "pdf",
    ".docx": "docx",
    ".json": "json",
    ".jsonl": "jsonl",
}
# "No idea" media types: the URL suffix and the bytes decide.
_GENERIC = frozenset({"", "application/octet-stream", "binary/octet-stream"})
# Servers that know no better send .docx as a zip (it is one); the suffix plus the zip magic say docx.
_ZIP = frozenset({"application/zip", "application/x-zip-compressed"})
# Plain text whose URL names a more specific text format (raw file hosts serve everything as text/plain).
_TEXT_REFINEMENTS = frozenset({"md", "json", "jsonl"})
_UTF8_BOM = b"\xef\xbb\xbf"


def is_url(item: object) -> bool:
    """True for a string starting with http:// or https:// (any case)."""
    return isinstance(item, str) and item[:8].lower().startswith(("http://", "https://"))


def redact_url(url: str) -> str:
    """`url` without its userinfo (`https://user:pass@host/x` -> `https://host/x`), for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _strip_userinfo_text(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _strip_userinfo_text(url: str) -> str:
    # For strings urlsplit rejects (bad IPv6 brackets): drop everything between "//" and the last "@" of the
    # authority, textually.
    scheme, sep, rest = url.partition("//")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    return f"{scheme}//{authority.rpartition('@')[2]}{slash}{tail}"


def _suffix_type(url: str) -> str | None:
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    return _SUFFIXES.get(posixpath.splitext(path)[1].lower())


def _media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"%PDF-"):
        return "pdf"
    head = data[:1024].removeprefix(_UTF8_BOM).lstrip()[:15].lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "html"
    return None


def _type_from_header(content_type: str, url: str) -> str | None:
    """The file type the header (with the URL's suffix) decides, or None when only the bytes can tell."""
    file_type = _MEDIA_TYPES.get(content_type)
    if file_type == "txt":
        refined = _suffix_type(url)
        return refined if refined in _TEXT_REFINEMENTS else "txt"
    return file_type


def _needs_body(content_type: str, url: str) -> bool:
    """Whether the body must be read before the type is known (else the header alone rules it out)."""
    return content_type in _GENERIC or (content_type in _ZIP and _suffix_type(url) == "docx")


def detect_file_type(content_type: str, url: str, data: bytes) -> str | None:
    """The loader file type ("html", "txt", "md", "pdf", "docx", "json", "jsonl") of a response, or None.

    The Content-Type decides first (text/plain at a .md/.markdown, .json or .jsonl URL is that format). When
    it is absent or generic (application/octet-stream), the URL path's suffix decides, then the bytes
    (``%PDF-``, a leading ``<!doctype html``/``<html``). A zip at a .docx URL is a docx. Anything else
    (images, archives, ...) is None: unsupported.
    """
    media = _media_type(content_type)
    file_type = _type_from_header(media, url)
    if file_type is not None:
        return file_type
    if media in _ZIP:
        return "docx" if _suffix_type(url) == "docx" and data.startswith(b"PK\x03\x04") else None
    if media not in _GENERIC:
        return None
    return _suffix_type(url) or _sniff(data)


@dataclass(frozen=True, slots=True)
class Fetched:
    url: str  # the URL as given (the document source)
    final_url: str  # after redirects, without credentials
    data: bytes
    content_type: str  # media type, lowercased, without parameters; '' when the server sent none
    file_type: str  # "html", "txt", "md", "pdf", "docx", "json" or "jsonl"


class _Transient(Exception):
    """A failure worth retrying; becomes a DocumentParseError when the attempts run out."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class UrlFetcher:
    """Fetches URLs with at most `concurrency` in flight; `async with UrlFetcher() as f: await f.fetch(u)`.

    Construction does no I/O. The HTTP session and the concurrency gate are created on first use in the
    running event loop (one of each per loop, closed with that loop if `aclose()` is never called).
    `policy` decides which addresses may be fetched and how many redirects are followed (default:
    `FetchPolicy.permissive()`; the server passes `FetchPolicy.server(...)`, which refuses private addresses).
    """

    def __init__(
        self,
        *,
        concurrency: int = 8,
        timeout: float = 30.0,
        max_bytes: int = 50 * 1024 * 1024,
        max_retries: int = 2,
        user_agent: str = DEFAULT_USER_AGENT,
        initial_backoff: float = 0.5,
        policy: FetchPolicy | None = None,
    ) -> None:
        at_least(1, concurrency=concurrency, max_bytes=max_bytes)
        at_least(0, max_retries=max_retries, initial_backoff=initial_backoff)
        positive(timeout=timeout)
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_retries = max_retries
        self.user_agent = user_agent
        self.policy = policy if policy is not None else FetchPolicy.permissive()
        self._retry_policy = RetryPolicy(
            max_attempts=max_retries + 1,
            initial_backoff=initial_backoff,
            max_backoff=8.0,
            max_retry_after=MAX_RETRY_AFTER_S,
            deadline=None,
        )
        self._sessions: PerLoop[aiohttp.ClientSession] = PerLoop(self._new_session, aclose=_close_session)
        self._gates: PerLoop[asyncio.Semaphore] = PerLoop(lambda: asyncio.Semaphore(self.concurrency))

    def _new_session(self) -> aiohttp.ClientSession:
        import aiohttp

        guarded = self.policy.refuse_private
        # Guarded: names resolve through the guard, and aiohttp connects only to what it returns. No proxies
        # then: a proxy resolves the name itself, out of the guard's sight (and would be refused if private).
        # Otherwise trust_env: honour HTTP(S)_PROXY/NO_PROXY like curl and requests do; corporate networks
        # need it.
        resolver = cast("AbstractResolver", GuardedResolver(self.policy)) if guarded else None
        connector = aiohttp.TCPConnector(limit=self.concurrency, ttl_dns_cache=300, resolver=resolver)
        return aiohttp.ClientSession(
            connector=connector, headers={"User-Agent": self.user_agent}, trust_env=not guarded
        )

    async def __aenter__(self) -> UrlFetcher:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the running loop's session (a later fetch opens a new one)."""
        await self._sessions.aclose_current()

    def _retry_delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `retry` (1-based): full jitter, or at least `Retry-After`
        (capped at 30 s) plus a little jitter so refused requests do not all come back at once."""
        return backoff_delay(retry, self._retry_policy, retry_after=retry_after)

    async def fetch(self, url: str) -> Fetched:
        """GET `url` (following redirects) and return its body and file type.

        Raises `InvalidInputError` for anything but an http(s) URL with a host (before any I/O), and
        `DocumentParseError` (`.path` is the URL without credentials) when it cannot be fetched, is not a
        supported type, or it or a redirect leads to an address the policy refuses.
        """
        shown = _validate(url)
        gate = self._gates.get()
        retry = 0
        while True:
            try:
                # The slot covers one attempt, body included; it is free while waiting to retry.
                async with gate:
                    return await self._attempt(url, shown)
            except _Transient as exc:
                if retry >= self.max_retries:
                    attempts = f" ({retry + 1} attempts)" if retry else ""
                    raise DocumentParseError(shown, exc.reason + attempts) from exc.__cause__
                retry += 1
                delay = self._retry_delay(retry, exc.retry_after)
            await asyncio.sleep(delay)

    async def _attempt(self, url: str, shown: str) -> Fetched:
        import aiohttp

        try:
            # One deadline for the whole attempt, redirects included.
            async with asyncio.timeout(self.timeout):
                return await self._follow(url, shown)
        except TimeoutError as exc:
            # Before ClientError: aiohttp's timeout errors are both.
            raise _Transient(f"timed out after {self.timeout:g}s") from exc
        except FetchRefused as exc:
            raise self._refused(shown, exc.reason) from None
        except aiohttp.ClientSSLError as exc:
            # A certificate or TLS failure will not fix itself: no retry.
            raise DocumentParseError(shown, _scrub(f"TLS error: {exc}", url)) from exc
        except aiohttp.ClientConnectorError as exc:
            raise _Transient(_scrub(f"cannot connect: {exc}", url)) from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            # Dropped mid-response (server disconnected, truncated body): transient like a failed connect.
            raise _Transient(_scrub(f"connection failed: {type(exc).__name__}: {exc}", url)) from exc
        except aiohttp.ClientError as exc:
            raise DocumentParseError(shown, _scrub(f"{type(exc).__name__}: {exc}", url)) from exc

    async def _follow(self, url: str, shown: str) -> Fetched:
        """GET `url`, following at most `policy.max_redirects` redirects by hand, each hop checked like the
        first URL (aiohttp's own following would connect to a refused literal address unchecked)."""
        import aiohttp
        from yarl import URL

        session = self._sessions.get()
        target = _parse_url(url, shown)
        for _ in range(self.policy.max_redirects + 1):
            self._check_hop(target, shown)
            request = session.get(
                target, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
            async with request as response:
                location = response.headers.get("Location") if response.status in _REDIRECTS else None
                if location is None:
                    return await self._read(url, shown, response)
            try:
                # Relative locations resolve against the current hop (keeping its credentials: same origin);
                # an absolute one carries only its own.
                target = target.join(URL(location))
            except ValueError:
                raise DocumentParseError(shown, "redirected to an invalid URL") from None
        raise DocumentParseError(shown, f"too many redirects (more than {self.policy.max_redirects})")

    def _check_hop(self, target: URL, shown: str) -> None:
        """Refuse a hop that is not http(s) or whose host is a refused IP literal (aiohttp connects to those
        without asking the resolver); names are checked by the resolver."""
        if target.scheme not in ("http", "https"):
            raise DocumentParseError(
                shown, f"redirected to a non-http(s) URL ({target.scheme or 'no'} scheme)"
            )
        if not target.raw_host:
            raise DocumentParseError(shown, "redirected to a URL without a host")
        reason = self.policy.refused_host(target.raw_host)
        if reason is not None:
            raise self._refused(shown, reason)

    def _refused(self, shown: str, reason: str) -> DocumentParseError:
        hint = f"; {self.policy.hint}" if self.policy.hint else ""
        return DocumentParseError(shown, f"refused: {reason}{hint}")

    async def _read(self, url: str, shown: str, response: aiohttp.ClientResponse) -> Fetched:
        status = response.status
        if not 200 <= status < 300:
            reason = f"HTTP {status} {response.reason or ''}".rstrip()
            if status == 429 or status >= 500:
                raise _Transient(reason, parse_retry_after(response.headers))
            raise DocumentParseError(shown, reason)

        final_url = redact_url(str(response.url))
        raw_type = response.headers.get("Content-Type", "")
        media = _media_type(raw_type)
        # Decide what we can from the headers before reading a byte of the body.
        file_type = _type_from_header(media, final_url)
        if file_type is None and not _needs_body(media, final_url):
            raise DocumentParseError(shown, f"unsupported content type {media!r}")
        length = response.content_length
        if length is not None and length > self.max_bytes:
            raise DocumentParseError(
                shown, f"larger than {self.max_bytes} bytes (Content-Length {length}); raise max_bytes"
            )

        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > self.max_bytes:
                raise DocumentParseError(shown, f"larger than {self.max_bytes} bytes; raise max_bytes")
            chunks.append(chunk)
        data = b"".join(chunks)

        if file_type is None:
            file_type = detect_file_type(media, final_url, data)
            if file_type is None:
                what = f"content type {media!r}" if media else "content (no Content-Type)"
                raise DocumentParseError(shown, f"unsupported {what}")
        return Fetched(url=url, final_url=final_url, data=data, content_type=media, file_type=file_type)


def _parse_url(url: str, shown: str) -> URL:
    from yarl import URL

    try:
        return URL(url)
    except ValueError as exc:  # e.g. a host that is not valid IDNA
        raise DocumentParseError(shown, "invalid URL") from exc


def _validate(url: str) -> str:
    """The URL as shown in messages; InvalidInputError unless it is an http(s) URL with a host."""
    if not is_url(url):
        shown = redact_url(url) if isinstance(url, str) else repr(url)
        raise InvalidInputError(f"not an http(s) URL: {shown[:200]}")
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError as exc:
        raise InvalidInputError(f"invalid URL {shown[:200]}: {exc}") from exc
    if not parts.hostname:
        raise InvalidInputError(f"URL has no host: {shown[:200]}")
    return shown


def _scrub(text: str, url: str) -> str:
    """`text` without the URL's credentials, in case an underlying error message quoted them."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return text
    userinfo = parts.netloc.rpartition("@")[0]
    if not userinfo:
        return text
    text = text.replace(userinfo + "@", "")
    for secret in (userinfo, parts.password):
        if secret:
            text = text.replace(secret, "***")
    return text


async def _close_session(session: aiohttp.ClientSession) -> None:
    await session.close()
