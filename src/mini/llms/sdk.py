"""Your own SDK client as the transport: `LLMConfig(client=AsyncOpenAI(...) | AsyncAzureOpenAI(...) |
AsyncAnthropic(...))`.

Why: the SDK client carries what a deployment already set up on it (proxies and custom transports, Azure
Entra ID token refresh, gateway headers, the auto-instrumentation that hooks the SDK's methods). Everything
else stays ours: the request bodies and answer parsing are the fast path's (one wire translation per
provider), and so are the limiter (one per client), the retry policy (the client is re-optioned with
`max_retries=0`, so retries are never doubled), the timeout and the typed errors. The fast path stays the
default: it costs about a tenth of the SDK's CPU per request (`mini._http`).
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

from mini import _registry
from mini._http import parse_retry_after, retry_headers
from mini._limits import endpoint_key, limiter_for
from mini.config import LLMConfig
from mini.errors import (
    ConfigurationError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    status_error,
)
from mini.llms.anthropic import PROVIDER as ANTHROPIC
from mini.llms.anthropic import AnthropicChat, stream_error
from mini.llms.base import LLM, Delta, ProviderChat
from mini.llms.openai import OpenAIChat

OPENAI_SDK = "openai"
ANTHROPIC_SDK = "anthropic"

_PARAMETERS: dict[Any, frozenset[str]] = {}


def sdk_arguments(method: Callable[..., Any], payload: Mapping[str, Any]) -> dict[str, Any]:
    """Our request body as keyword arguments of an SDK method: the fields it names as themselves (so the
    instrumentation that wraps the method sees them), the others (extra_params) in `extra_body`."""
    function = getattr(method, "__func__", method)
    names = _PARAMETERS.get(function)
    if names is None:
        names = _PARAMETERS[function] = frozenset(inspect.signature(method).parameters)
    arguments = {key: value for key, value in payload.items() if key in names}
    extra = {key: value for key, value in payload.items() if key not in names}
    if extra:
        arguments["extra_body"] = extra
    return arguments


def sdk_of(client: Any) -> str:
    """Which SDK a client object comes from ("openai" or "anthropic"), checked to be its async client."""
    root = type(client).__module__.partition(".")[0]
    if root == OPENAI_SDK:
        import openai

        if isinstance(client, openai.AsyncOpenAI):
            return OPENAI_SDK
    elif root == ANTHROPIC_SDK:
        import anthropic

        if isinstance(client, anthropic.AsyncAnthropic):
            return ANTHROPIC_SDK
    raise ConfigurationError(
        f"client must be an openai.AsyncOpenAI/AsyncAzureOpenAI or anthropic.AsyncAnthropic, not "
        f"{type(client).__module__}.{type(client).__name__} (a sync client would block the event loop)"
    )


def client_provider(client: Any) -> str:
    """The provider name a client speaks for: "azure" for AsyncAzureOpenAI, else its SDK's."""
    sdk = sdk_of(client)
    if sdk == OPENAI_SDK:
        import openai

        return "azure" if isinstance(client, openai.AsyncAzureOpenAI) else "openai"
    return ANTHROPIC


def prepared(client: Any, timeout: float) -> Any:
    """The client as we use it: our timeout, and no SDK retries (our policy retries)."""
    return client.with_options(max_retries=0, timeout=timeout)


def client_limiter_key(client: Any) -> str:
    """Limits per client object: the client's base URL and its identity (its credential may rotate)."""
    return endpoint_key(str(client.base_url), f"sdk-client-{id(client)}")


def _transport_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(timeouts, other transport failures) of the HTTP libraries the SDKs run on (httpx2, or a legacy httpx
    client given to them): raised as they are while a stream is read, the SDKs do not wrap those."""
    timeouts: list[type[BaseException]] = []
    failures: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        module = sys.modules.get(name)  # only what an SDK already imported
        if module is not None:
            timeouts.append(module.TimeoutException)
            failures.append(module.TransportError)
    return tuple(timeouts), tuple(failures)


@contextlib.contextmanager
def map_sdk_errors(
    client: Any, provider: str, in_stream: Callable[[Mapping[str, Any]], ProviderError] | None = None
) -> Iterator[None]:
    """The SDK's exceptions -> ours (both SDKs share the shape: timeout < connection error, status errors
    with the response and the request id), always `from` the original. `in_stream` reads the body of an
    error event that arrived inside a 200 stream."""
    sdk = __import__(sdk_of(client))
    timeouts, failures = _transport_errors()
    try:
        yield
    except (sdk.APITimeoutError, *timeouts) as exc:
        raise ProviderTimeoutError("no answer within the timeout", provider=provider) from exc
    except (sdk.APIConnectionError, *failures) as exc:
        raise ProviderConnectionError(f"{type(exc).__name__}: {exc}", provider=provider) from exc
    except sdk.APIStatusError as exc:
        body = exc.body
        if exc.status_code < 400 and in_stream is not None and isinstance(body, Mapping):
            raise in_stream(body) from exc
        message = exc.message
        if isinstance(body, Mapping):
            inner = body.get("error", body)
            if isinstance(inner, Mapping) and inner.get("message"):
                message = str(inner["message"])
        raise status_error(
            exc.status_code,
            message,
            provider=provider,
            retry_after=parse_retry_after(exc.response.headers),
            request_id=exc.request_id,
        ) from exc
    except sdk.APIError as exc:  # e.g. a response that does not validate
        raise ProviderError(f"{type(exc).__name__}: {exc}", provider=provider) from exc


class _SDKStream:
    """An SDK stream as our stream: decoded chunks (`to_dict()`, the wire's shape) under the error mapping,
    and `aclose()` to close the connection (which tells the provider to stop generating)."""

    def __init__(self, stream: Any, mapping: Callable[[], contextlib.AbstractContextManager[None]]) -> None:
        self._stream = stream
        self._mapping = mapping

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        with self._mapping():
            async for item in self._stream:
                yield item.to_dict()

    async def aclose(self) -> None:
        await self._stream.close()


class _SDKChat(ProviderChat):
    """What both SDK adapters add to their provider's wire translation: the client, its limiter, the
    per-request retry header and the error mapping."""

    _sdk_client: Any
    _sdk_provider: str

    def _use_client(self, config: LLMConfig, provider: str) -> None:
        self._sdk_client = prepared(config.client, config.timeout)
        self._sdk_provider = provider
        self.name = f"{provider}:{self.model}"
        self._limiter = limiter_for(
            client_limiter_key(config.client),
            max_in_flight=config.max_concurrency,
            requests_per_minute=config.requests_per_minute,
            tokens_per_minute=config.tokens_per_minute,
        )

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return map_sdk_errors(self._sdk_client, self._sdk_provider)

    def _method(self) -> Callable[..., Awaitable[Any]]:
        raise NotImplementedError

    async def _call(self, payload: dict[str, Any]) -> Any:
        method = self._method()
        with self._errors():
            return await method(**sdk_arguments(method, payload), extra_headers=retry_headers())

    async def _answer(self, payload: dict[str, Any]) -> Any:
        return (await self._call(payload)).to_dict()

    async def _open_stream(self, payload: dict[str, Any]) -> _SDKStream:
        return _SDKStream(await self._call(payload), self._errors)

    def _send(self, payload: dict[str, Any]) -> Awaitable[Any]:
        return self._answer(payload)

    def _open(self, payload: dict[str, Any]) -> Awaitable[Any]:
        return self._open_stream(payload)

    async def aclose(self) -> None:
        """The client is the caller's: they close it."""


class OpenAISDKChat(_SDKChat, OpenAIChat):
    """OpenAI-compatible chat through an `openai.AsyncOpenAI` (or `AsyncAzureOpenAI`) client."""

    def __init__(self, config: LLMConfig) -> None:
        provider = client_provider(config.client)
        ProviderChat.__init__(self, config, provider, str(config.client.base_url), None)
        self._use_client(config, provider)

    def _method(self) -> Callable[..., Awaitable[Any]]:
        return self._sdk_client.chat.completions.create

    def _deltas(self, stream: Any) -> AsyncGenerator[Delta, None]:
        return self._chunk_deltas(stream)  # the SDK ends at [DONE]: a finish reason says it was complete


class AnthropicSDKChat(_SDKChat, AnthropicChat):
    """Anthropic Messages through an `anthropic.AsyncAnthropic` client."""

    def __init__(self, config: LLMConfig) -> None:
        ProviderChat.__init__(self, config, ANTHROPIC, str(config.client.base_url), None)
        self._use_client(config, ANTHROPIC)

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return map_sdk_errors(self._sdk_client, ANTHROPIC, stream_error)

    def _method(self) -> Callable[..., Awaitable[Any]]:
        return self._sdk_client.messages.create

    def _deltas(self, stream: Any) -> AsyncGenerator[Delta, None]:
        return self._event_deltas(stream)


def sdk_chat(config: LLMConfig) -> LLM:
    """The chat model that speaks through `config.client`; the model's provider prefix, if any, must match."""
    provider = client_provider(config.client)
    declared, _name = _registry.split_model(config.model, default_provider=provider)
    if declared not in (provider, "openai" if provider == "azure" else provider):
        raise ConfigurationError(
            f"LLMConfig(model={config.model!r}) names the {declared!r} provider, but the client is "
            f"{type(config.client).__name__}: use a {provider!r} model name (or no prefix)"
        )
    if provider == ANTHROPIC:
        return AnthropicSDKChat(config)
    return OpenAISDKChat(config)
