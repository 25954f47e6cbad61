"""The `LLM` protocol (async-only), its value types, and choosing a provider from configuration."""

from __future__ import annotations

import contextlib
import copy
import json
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Protocol,
    TypeAlias,
    TypedDict,
    TypeVar,
    Unpack,
    runtime_checkable,
)

from mini import _registry
from mini.config import OFFLINE_LLM_NAMES, LLMConfig, load_settings
from mini.errors import InvalidInputError, ProviderError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from mini._http import HttpClient, SSEStream
    from mini._limits import Limiter, RetryPolicy

# A structured-output request: a pydantic model class, a JSON Schema, or a full OpenAI `response_format`
# object ({"type": "json_schema", ...} or {"type": "json_object"}).
ResponseFormat: TypeAlias = "type[BaseModel] | Mapping[str, Any]"

# Provider-neutral conversation, in OpenAI's shape; each adapter translates it to its wire format:
#   {"role": "system" | "user", "content": str}
#   {"role": "assistant", "content": str, "tool_calls": [ToolCall, ...]}     (tool_calls optional)
#   {"role": "tool", "tool_call_id": str, "content": str}                    (a tool's result)
Message = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call: its name, what it does, and a JSON Schema for its arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The model asked for `name(**arguments)`; answer with `tool_result(call, output)`."""

    id: str
    name: str
    arguments: Mapping[str, Any]


def assistant_message(text: str, tool_calls: Sequence[ToolCall] = ()) -> dict[str, Any]:
    """The model's turn, to append to the conversation before the tool results."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = list(tool_calls)
    return message


def tool_result(call: ToolCall, output: str) -> dict[str, Any]:
    """A tool's output as the message that answers `call`."""
    return {"role": "tool", "tool_call_id": call.id, "content": output}


def _strict_schema(schema: Any) -> Any:
    """`schema` made fit for OpenAI's strict mode (`additionalProperties: false` on every object), or None when
    it cannot be without changing its meaning (an optional property: strict mode wants every one required)."""
    strict = copy.deepcopy(schema)
    stack = [strict]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        properties = node.get("properties")
        if isinstance(properties, dict):
            if set(node.get("required") or ()) != set(properties):
                return None
            node.setdefault("additionalProperties", False)
        stack.extend(node.values())
    return strict


def json_schema_format(spec: ResponseFormat) -> dict[str, Any]:
    """Any `ResponseFormat` as OpenAI's `response_format` object; strict when the schema allows it."""
    if isinstance(spec, type) and hasattr(spec, "model_json_schema"):
        name, schema = spec.__name__, spec.model_json_schema()
    elif isinstance(spec, Mapping):
        if spec.get("type") in ("json_schema", "json_object"):
            return dict(spec)
        name, schema = str(spec.get("title") or "response"), dict(spec)
    else:
        raise InvalidInputError(
            f"response_format must be a pydantic model class or a JSON Schema dict, not {type(spec).__name__}"
        )
    strict = _strict_schema(schema)
    body: dict[str, Any] = {"name": "".join(c if c.isalnum() or c in "_-" else "_" for c in name)[:64]}
    body.update({"schema": strict, "strict": True} if strict is not None else {"schema": schema})
    return {"type": "json_schema", "json_schema": body}


def format_instruction(fmt: Mapping[str, Any]) -> str:
    """The prompt that asks for JSON where the wire cannot (Anthropic, Bedrock): the schema spelled out."""
    schema = (fmt.get("json_schema") or {}).get("schema")
    if schema is None:
        return "Reply with only a JSON object."
    return "Reply with only a JSON object that matches this JSON Schema:\n" + json.dumps(schema)


def provider_limiter(config: LLMConfig, base_url: str, credential: str | None) -> Limiter:
    """The process-wide limiter of an endpoint and credential, with this config's cap and rates."""
    from mini._limits import endpoint_key, limiter_for

    return limiter_for(
        endpoint_key(base_url, credential),
        max_in_flight=config.max_concurrency,
        requests_per_minute=config.requests_per_minute,
        tokens_per_minute=config.tokens_per_minute,
    )


class _Closable(Protocol):
    async def aclose(self) -> None: ...


S = TypeVar("S", bound=_Closable)


async def stream_held(
    limiter: Limiter,
    open_stream: Callable[[], Awaitable[S]],
    read: Callable[[S], AsyncGenerator[Delta, None]],
    *,
    policy: RetryPolicy,
    tokens: int,
    on_error: Callable[[ProviderError], object],
) -> AsyncIterator[Delta]:
    """A streamed completion under `limiter`: opening is retried (never once output has flowed), the slot is
    held until the last token (the provider is busy until then), the reader and then the stream are closed
    however the stream ends (closing the connection tells the provider to stop generating), and provider
    errors pass `on_error` (to add the model, a hint) on their way out."""
    try:
        async with limiter.hold(open_stream, policy=policy, tokens=tokens) as stream:
            try:
                # Closed first, so the reader's own cleanup runs while its stream is still open.
                async with contextlib.aclosing(read(stream)) as deltas:
                    async for delta in deltas:
                        yield delta
            finally:
                await stream.aclose()
    except ProviderError as exc:
        on_error(exc)
        raise


def malformed_event(data: str, provider: str, what: str = "event") -> ProviderError:
    """The error for a streamed event whose JSON cannot be read, quoting its start (built only on failure,
    so the per-event path stays a bare `json.loads`)."""
    return ProviderError(f"malformed stream {what}: {data[:200]!r}", provider=provider)


def estimate_tokens(messages: Any, max_output: int | None, *, default_output: int = 512) -> int:
    """A request's size for a tokens/min budget: ~4 characters a token in, plus the output it may produce."""
    return len(json.dumps(messages, default=str)) // 4 + (max_output or default_output)


def parse_arguments(raw: Any) -> dict[str, Any]:
    """Tool arguments from the wire (a JSON string or an object); unparsable text is kept under "_raw"."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {"_raw": raw}
    return value if isinstance(value, dict) else {"_raw": raw}


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens
        )

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    model: str
    usage: Usage = Usage()
    finish_reason: str | None = None  # provider-neutral: "stop", "length", "tool_calls", or the raw value
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of a streamed completion: text; the last piece carries usage, finish_reason and the
    complete tool calls (adapters assemble streamed argument fragments, callers never see partial JSON)."""

    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()


class ChatOptions(TypedDict, total=False):
    """The per-request options of `LLM.complete` and `LLM.stream`, all keyword-only; absent or None means
    the config's value (no `tools`: none offered)."""

    temperature: float | None
    max_tokens: int | None
    tools: Sequence[Tool] | None
    response_format: ResponseFormat | None  # honoured where `supports_response_format`, else prompted


@runtime_checkable
class LLM(Protocol):
    """A chat model. No I/O in `__init__`. `stream` is an async generator; closing it cancels the request.

    `tools` offers functions to call; the answer's `tool_calls` (and `finish_reason == "tool_calls"`) say the
    model wants them run. `usage` is the running total of tokens this instance spent.
    """

    name: str
    usage: Usage

    # Implementations may spell the options out as keyword-only parameters (`ProviderChat` does).
    async def complete(self, messages: Sequence[Message], **options: Unpack[ChatOptions]) -> Completion: ...

    def stream(self, messages: Sequence[Message], **options: Unpack[ChatOptions]) -> AsyncIterator[Delta]: ...

    async def aclose(self) -> None: ...


class ProviderChat(ABC):
    """The `LLM` flow every hosted provider shares, written once: requests under the endpoint's limiter with
    the config's retry policy, usage accounting, and the model (and provider hints) on every error.

    A provider supplies only its wire format: `_payload` builds a request, `_tokens` sizes it for the
    tokens/min budget, `_send`/`_parse` make and read one answer, `_open`/`_deltas` open and read a stream
    (`_deltas` adds the usage it reports to `self.usage`, as it is known only at the end)."""

    # Fields a streaming request adds to the payload (after the config's extra_params, so they win).
    stream_fields: ClassVar[Mapping[str, Any]] = {}
    # Whether the wire has JSON-schema structured outputs (`_add_format`); without, the schema is prompted.
    supports_response_format: ClassVar[bool] = False

    def __init__(self, config: LLMConfig, provider: str, endpoint: str, credential: str | None) -> None:
        _provider, self.model = _registry.split_model(config.model, default_provider=provider)
        self.name = f"{provider}:{self.model}"
        self.config = config
        self.usage = Usage()
        self._policy = config.retry_policy()
        self._limiter = provider_limiter(config, endpoint, credential)

    def _payload(
        self,
        messages: Sequence[Message],
        temperature: float | None,
        max_tokens: int | None,
        tools: Sequence[Tool] | None,
        response_format: ResponseFormat | None = None,
    ) -> dict[str, Any]:
        """The request body, with the config's temperature and max_tokens where the call gave none."""
        config = self.config
        fmt = None if response_format is None else json_schema_format(response_format)
        if fmt is not None and not self.supports_response_format:
            messages = [*messages, {"role": "system", "content": format_instruction(fmt)}]
        payload = self._body(
            messages,
            config.temperature if temperature is None else temperature,
            config.max_tokens if max_tokens is None else max_tokens,
            tools,
        )
        if fmt is not None and self.supports_response_format:
            self._add_format(payload, fmt)
        return payload

    def _add_format(self, payload: dict[str, Any], fmt: dict[str, Any]) -> None:
        """Put an OpenAI-shaped `response_format` into the request (wires with `supports_response_format`)."""
        raise NotImplementedError

    @abstractmethod
    def _body(
        self, messages: Sequence[Message], temperature: float, limit: int | None, tools: Sequence[Tool] | None
    ) -> dict[str, Any]: ...

    @abstractmethod
    def _tokens(self, payload: dict[str, Any]) -> int: ...

    # Plain methods returning awaitables: the limiter awaits them, no coroutine layer is added per request.
    @abstractmethod
    def _send(self, payload: dict[str, Any]) -> Awaitable[Any]: ...

    @abstractmethod
    def _parse(self, data: Any) -> Completion: ...

    @abstractmethod
    def _open(self, payload: dict[str, Any]) -> Awaitable[Any]: ...

    @abstractmethod
    def _deltas(self, stream: Any) -> AsyncGenerator[Delta, None]: ...

    def _annotate(self, exc: ProviderError) -> None:
        """Add what the transport could not know to an error on its way out."""
        exc.with_context(model=self.model)

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tools: Sequence[Tool] | None = None,
        response_format: ResponseFormat | None = None,
    ) -> Completion:
        payload = self._payload(messages, temperature, max_tokens, tools, response_format)
        try:
            data = await self._limiter.call(
                lambda: self._send(payload), policy=self._policy, tokens=self._tokens(payload)
            )
        except ProviderError as exc:
            self._annotate(exc)
            raise
        completion = self._parse(data)
        self.usage += completion.usage
        return completion

    def stream(
        self,
        messages: Sequence[Message],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tools: Sequence[Tool] | None = None,
        response_format: ResponseFormat | None = None,
    ) -> AsyncIterator[Delta]:
        payload = self._payload(messages, temperature, max_tokens, tools, response_format)
        payload.update(self.stream_fields)
        # Returned, not wrapped: closing the caller's iterator closes the stream (and the connection) at once.
        return stream_held(
            self._limiter,
            lambda: self._open(payload),
            self._deltas,
            policy=self._policy,
            tokens=self._tokens(payload),
            on_error=self._annotate,
        )


class HttpChat(ProviderChat):
    """A provider spoken over our `HttpClient`: a JSON POST to `path` answers, the same POST asking for
    server-sent events streams. Subclasses set `path` and `self._http`."""

    path: str
    _http: HttpClient

    def _send(self, payload: dict[str, Any]) -> Awaitable[Any]:
        return self._http.post_json(self.path, payload)

    def _open(self, payload: dict[str, Any]) -> Awaitable[SSEStream]:
        return self._http.open_sse(self.path, payload)

    async def aclose(self) -> None:
        await self._http.aclose()


def resolve_llm_config(config: LLMConfig | None) -> LLMConfig | None:
    """The LLM to use, or None for offline extractive answers.

    Given a config, use it (`LLMConfig(model="none")` forces offline). Otherwise MINI_LLM names one ("none" forces offline), and an OPENAI_API_KEY in the
    environment alone selects the default OpenAI model.
    """
    if config is None:
        # The settings' view: MINI_LLM and every MINI_LLM_* knob (timeout, limits, retries, ...).
        config = LLMConfig.from_settings(load_settings())
    return None if config.model.strip().lower() in OFFLINE_LLM_NAMES else config


def create_llm(config: LLMConfig) -> LLM:
    if config.client is not None:  # the user's own SDK client: mini.llms.sdk wraps it
        from mini.llms.sdk import sdk_chat

        return sdk_chat(config)
    provider, _name = _registry.split_model(config.model, default_provider="openai")
    cls = _registry.load(_registry.lookup(_registry.LLMS, provider, "LLM provider"))
    llm: LLM = cls(config)
    return llm
