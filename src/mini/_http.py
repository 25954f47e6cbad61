"""A lean JSON-over-HTTP client for provider APIs, on aiohttp: per-loop sessions, timeouts, typed errors, SSE.

Why not the vendor SDKs: at 64 questions in flight the client's CPU per request decides how far above the
provider's own latency a batch finishes, and how long the event loop is busy in one go. Measured here
(`bench/http_clients.py`): aiohttp 0.18 ms CPU per chat request, AsyncOpenAI 1.9 ms (1.3 ms on its aiohttp
transport), raw httpx 5.2 ms. The OpenAI-compatible wire format is small and stable, so we speak it directly.

Every failure leaves as a `mini.errors.ProviderError` subclass carrying the HTTP status and Retry-After, which
the limiter's retry policy reads. Requests honour HTTPS_PROXY/HTTP_PROXY/ALL_PROXY/NO_PROXY, as the SDKs do
(`env_proxy`: read per request, without aiohttp's `trust_env`, which costs two thread hops per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import inspect
import json
import os
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from mini._limits import current_attempt
from mini._portal import PerLoop
from mini._sse import SSEDecoder, SSEEvent
from mini.errors import (
    ConfigurationError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    status_error,
)

if TYPE_CHECKING:
    import aiohttp
    from pydantic import SecretStr


# An API key, or a function returning the current one (sync or async): called before every request, so a
# refreshing token (Azure Entra ID, a gateway's short-lived key) is always fresh. Nothing is cached here.
KeyProvider: TypeAlias = Callable[[], "str | Awaitable[str]"]
ApiKey: TypeAlias = "str | KeyProvider"


async def current_key(provider: KeyProvider) -> str:
    """The key a provider returns now. Async providers are awaited; sync ones run in a worker thread, since
    token providers (azure-identity's) may do network I/O and must not block the event loop."""
    if inspect.iscoroutinefunction(provider):
        value: Any = await provider()
    else:
        value = await asyncio.to_thread(provider)
        if inspect.isawaitable(value):
            value = await value
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"the api_key callable returned {type(value).__name__}, not a non-empty str")
    return value


def credential_id(api_key: ApiKey | None) -> str | None:
    """What identifies a credential for the limiter: the key itself (hashed there), or the provider object
    (its tokens rotate, the quota behind them does not)."""
    if api_key is None or isinstance(api_key, str):
        return api_key
    return f"key-provider-{id(api_key)}"


class KeyAuth:
    """Per-request credential headers from a `KeyProvider`: `header: [scheme ]<key>`."""

    def __init__(
        self, provider: KeyProvider, *, header: str = "Authorization", scheme: str = "Bearer"
    ) -> None:
        self.provider = provider
        self.header = header
        self.scheme = scheme

    async def headers(self) -> dict[str, str]:
        key = await current_key(self.provider)
        return {self.header: f"{self.scheme} {key}" if self.scheme else key}


# The variables `urllib.request.getproxies_environment` reads for provider URLs (http and https).
_PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
_NO_PROXY_VARIABLES = ("no_proxy", "NO_PROXY")


def env_proxy(scheme: str, host: str) -> str | None:
    """The proxy URL the environment names for `scheme://host`, or None (none set, or NO_PROXY excludes the
    host). Read on every request, so a changed environment applies at once.

    Why not aiohttp's `trust_env=True`: it resolves proxies and reads ~/.netrc in a worker thread on every
    request, which doubled the CPU of a chat request (0.25 -> 0.53 ms, measured against the simulator), and
    a .netrc entry for the provider's host makes aiohttp refuse our Authorization header. Here the common
    case (no proxy variable set) is a few dictionary lookups, and the answer is cached per environment."""
    environment = tuple(os.environ.get(name) for name in _PROXY_VARIABLES)
    if not any(environment):
        return None
    no_proxy = tuple(os.environ.get(name) for name in _NO_PROXY_VARIABLES)
    return _proxy_for(environment + no_proxy, scheme, host)


@functools.lru_cache(maxsize=256)
def _proxy_for(environment: tuple[str | None, ...], scheme: str, host: str) -> str | None:
    """`env_proxy`'s decision for one environment (its values are the cache key; urllib reads them)."""
    proxies = urllib.request.getproxies_environment()
    # The environment's NO_PROXY rules only (what aiohttp and requests apply); not in typeshed.
    if urllib.request.proxy_bypass_environment(host, proxies):  # type: ignore[attr-defined]
        return None
    return proxies.get(scheme) or proxies.get("all")


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date."""
    value = headers.get("retry-after-ms")
    if value is not None:
        with contextlib.suppress(ValueError):
            return max(0.0, float(value) / 1000.0)
    value = headers.get("retry-after")
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value).timestamp()
        return max(0.0, when - (time.time() if now is None else now))
    return None


RETRY_HEADER = "x-mini-retry-count"


def retry_headers() -> dict[str, str]:
    """`x-mini-retry-count: N` on the N-th retry of the current task's request (for the provider's logs and
    the simulator's retry accounting); nothing on a first attempt."""
    retries = current_attempt.get() - 1
    return {RETRY_HEADER: str(retries)} if retries > 0 else {}


_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-amzn-requestid")


def request_id(headers: Mapping[str, str]) -> str | None:
    """The provider's id for a request (OpenAI `x-request-id`, Anthropic `request-id`, AWS `x-amzn-RequestId`)."""
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def resolve_endpoint(
    base_url: str | None,
    api_key: str | None,
    *,
    env_base_url: str | None,
    env_api_key: SecretStr | None,
    default_base_url: str,
    missing: str,
) -> tuple[str, str | None]:
    """Explicit values, else the environment's; a base URL alone (a local server, a proxy, the simulator)
    needs no key, but the provider's public default does: without either, `missing` is raised."""
    base_url = base_url or env_base_url
    if api_key is None and env_api_key is not None:
        api_key = env_api_key.get_secret_value() or None
    if not api_key and base_url is None:
        raise ConfigurationError(missing)
    return base_url or default_base_url, api_key


def error_message(body: bytes) -> str:
    """The human message of an error body: OpenAI/Anthropic `{"error": {"message"}}`, `{"message"}`, or text."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:500] or "(empty response body)"
    if isinstance(data, dict):
        inner = data.get("error", data)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
        if data.get("message"):
            return str(data["message"])
    return text[:500]


@contextlib.contextmanager
def map_http_errors(provider: str) -> Iterator[None]:
    """Transport failures -> `ProviderConnectionError`/`ProviderTimeoutError` (the original kept as cause)."""
    import aiohttp

    try:
        yield
    except TimeoutError as exc:
        raise ProviderTimeoutError("no answer within the timeout", provider=provider) from exc
    except aiohttp.ClientError as exc:
        raise ProviderConnectionError(f"{type(exc).__name__}: {exc}", provider=provider) from exc


class SSEStream:
    """An open streaming response; iterate for events, `aclose()` to stop (it closes the connection, which
    tells the provider to stop generating)."""

    def __init__(self, response: aiohttp.ClientResponse, provider: str) -> None:
        self._response = response
        self._provider = provider

    async def __aiter__(self) -> AsyncIterator[SSEEvent]:
        decoder = SSEDecoder()
        with map_http_errors(self._provider):
            # Whatever bytes have arrived, not line by line: one decoder call per network read.
            async for chunk in self._response.content.iter_any():
                for event in decoder.feed(chunk):
                    yield event

    async def aclose(self) -> None:
        if not self._response.closed:
            self._response.close()


class HttpClient:
    """POSTs JSON to one base URL. Sessions are per event loop and closed when their loop shuts down."""

    def __init__(
        self,
        base_url: str,
        *,
        provider: str,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        auth: KeyAuth | None = None,
        timeout: float = 60.0,
        max_connections: int = 0,
    ) -> None:
        """`max_connections`: 0 (the default) leaves the bound to the endpoint's `Limiter`, which every caller
        goes through; a second, lower bound here (it was 1,000) queued requests past it in aiohttp's connector
        when a user allowed more (`bench/scale_process.py`: 1,000 of 1,024 chats in flight)."""
        self.base_url = base_url.rstrip("/")
        self.provider = provider
        self.timeout = timeout
        self._headers = dict(headers or {})
        self._query = dict(query or {}) or None
        self._auth = auth
        parts = urllib.parse.urlsplit(self.base_url)
        self._scheme, self._host = parts.scheme, parts.hostname or ""
        self._max_connections = max_connections
        self._sessions: PerLoop[aiohttp.ClientSession] = PerLoop(self._new_session, aclose=_close_session)

    def _new_session(self) -> aiohttp.ClientSession:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300)
        # Proxies come from `env_proxy` per request (not trust_env: see there). The ingestion fetcher
        # deliberately ignores proxies (mini.ingest.web): it guards where user-given URLs may go.
        return aiohttp.ClientSession(connector=connector, headers=self._headers)

    async def _send(
        self, path: str, payload: Mapping[str, Any], limits: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        session = self._sessions.get()
        headers = {"Content-Type": "application/json", **retry_headers()}
        if self._auth is not None:
            headers.update(await self._auth.headers())
        with map_http_errors(self.provider):
            response = await session.post(
                self.base_url + path,
                data=json.dumps(payload),
                timeout=limits,
                headers=headers,
                params=self._query,
                proxy=env_proxy(self._scheme, self._host),
            )
            if response.status >= 400:
                try:
                    body = await response.read()
                finally:
                    response.release()
                raise status_error(
                    response.status,
                    error_message(body),
                    provider=self.provider,
                    retry_after=parse_retry_after(response.headers),
                    request_id=request_id(response.headers),
                )
        return response

    async def post_json(self, path: str, payload: Mapping[str, Any]) -> Any:
        """POST and return the decoded JSON body; errors raise typed `ProviderError`s."""
        import aiohttp

        response = await self._send(path, payload, aiohttp.ClientTimeout(total=self.timeout))
        try:
            with map_http_errors(self.provider):
                body = await response.read()
        finally:
            response.release()
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ProviderError(f"response is not JSON: {body[:200]!r}", provider=self.provider) from exc

    async def open_sse(self, path: str, payload: Mapping[str, Any]) -> SSEStream:
        """POST and return the event stream once the status is known to be good.

        The timeout bounds connecting and every wait between two chunks, not the whole (open-ended) stream.
        """
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=self.timeout)
        return SSEStream(await self._send(path, payload, timeout), self.provider)

    async def aclose(self) -> None:
        await self._sessions.aclose_current()


async def _close_session(session: aiohttp.ClientSession) -> None:
    await session.close()
