"""The `LLM` protocol (async-only), its value types, and choosing a provider from configuration."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mini import _registry
from mini.config import OFFLINE_LLM_NAMES, LLMConfig, load_settings
from mini.errors import ProviderError

if TYPE_CHECKING:
    from mini._http import SSEStream
    from mini._limits import Limiter, RetryPolicy

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


def provider_limiter(config: LLMConfig, base_url: str, credential: str | None) -> Limiter:
    """The process-wide limiter of an endpoint and credential, with this config's cap and rates."""
    from mini._limits import endpoint_key, limiter_for

    return limiter_for(
        endpoint_key(base_url, credential),
        max_in_flight=config.max_concurrency,
        requests_per_minute=config.requests_per_minute,
        tokens_per_minute=config.tokens_per_minute,
    )


async def stream_sse(
    limiter: Limiter,
    open_stream: Callable[[], Awaitable[SSEStream]],
    read: Callable[[SSEStream], AsyncIterator[Delta]],
    *,
    policy: RetryPolicy,
    tokens: int,
    on_error: Callable[[ProviderError], object],
) -> AsyncIterator[Delta]:
    """A server-sent-events completion under `limiter`: opening is retried (never once output has flowed),
    the slot is held until the last token (the provider is busy until then), the connection is closed
    however the stream ends (which tells the provider to stop generating), and provider errors pass
    `on_error` (to add the model, a hint) on their way out."""
    try:
        async with limiter.hold(open_stream, policy=policy, tokens=tokens) as stream:
            try:
                async for delta in read(stream):
                    yield delta
            finally:
                await stream.aclose()
    except ProviderError as exc:
        on_error(exc)
        raise


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


@runtime_checkable
class LLM(Protocol):
    """A chat model. No I/O in `__init__`. `stream` is an async generator; closing it cancels the request.

    `tools` offers functions to call; the answer's `tool_calls` (and `finish_reason == "tool_calls"`) say the
    model wants them run. `usage` is the running total of tokens this instance spent.
    """

    name: str
    usage: Usage

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tools: Sequence[Tool] | None = None,
    ) -> Completion: ...

    def stream(
        self,
        messages: Sequence[Message],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tools: Sequence[Tool] | None = None,
    ) -> AsyncIterator[Delta]: ...

    async def aclose(self) -> None: ...


def resolve_llm_config(config: LLMConfig | None) -> LLMConfig | None:
    """The LLM to use, or None for offline extractive answers.

    Given a config, use it (`LLMConfig(model="none")` forces offline). Otherwise MINI_LLM names one ("none" forces offline), and an OPENAI_API_KEY in the
    environment alone selects the default OpenAI model.
    """
    if config is not None:
        return None if config.model.strip().lower() in OFFLINE_LLM_NAMES else config
    settings = load_settings()
    if settings.llm is not None:
        if settings.llm.strip().lower() in OFFLINE_LLM_NAMES:
            return None
        return LLMConfig(model=settings.llm)
    if settings.openai_api_key is not None and settings.openai_api_key.get_secret_value():
        return LLMConfig()
    return None


def create_llm(config: LLMConfig) -> LLM:
    provider, _name = _registry.split_model(config.model, default_provider="openai")
    cls = _registry.load(_registry.lookup(_registry.LLMS, provider, "LLM provider"))
    llm: LLM = cls(config)
    return llm
