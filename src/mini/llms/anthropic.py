"""Anthropic chat over the Messages API (`POST /v1/messages`), spoken directly over aiohttp.

No vendor SDK here for the same reason as the OpenAI adapter (docs/design-decisions.md): the SDK costs about
ten times the CPU per request, and the Messages wire format is small and stable.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterable, Mapping, Sequence
from typing import Any, ClassVar

from mini._http import HttpClient, KeyAuth, credential_id, resolve_endpoint
from mini._sse import SSEEvent
from mini.config import LLMConfig
from mini.errors import (
    AuthenticationError,
    ProviderConnectionError,
    ProviderError,
    ProviderServerError,
    RateLimitError,
    RefusalError,
)
from mini.llms.base import (
    Completion,
    Delta,
    HttpChat,
    Message,
    Tool,
    ToolCall,
    Usage,
    estimate_tokens,
    malformed_event,
    parse_arguments,
)

PROVIDER = "anthropic"
DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024  # the API requires max_tokens; this is what we ask for when nobody said
MESSAGES_PATH = "/v1/messages"
AUTH_HINT = "check ANTHROPIC_API_KEY (or LLMConfig(api_key=...)) and the key's permissions"

# Provider-neutral finish reasons; others ("pause_turn", "refusal", ...) pass through as they are.
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


def resolve_credentials(base_url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """Fill base_url/api_key from the environment; a base_url alone (a proxy, the simulator) needs no key."""
    from mini.config import load_settings

    settings = load_settings()
    base_url, api_key = resolve_endpoint(
        base_url,
        api_key,
        env_base_url=settings.anthropic_base_url,
        env_api_key=settings.anthropic_api_key,
        default_base_url=DEFAULT_BASE_URL,
        missing="no API key for the Anthropic provider: set ANTHROPIC_API_KEY (or pass api_key=), "
        "or point base_url/ANTHROPIC_BASE_URL at an Anthropic-compatible server",
    )
    base_url = base_url.rstrip("/")
    # The SDK's convention is a base URL without /v1; accept the OpenAI habit of including it too.
    return base_url.removesuffix("/v1"), api_key


def _text_blocks(content: Any) -> list[dict[str, Any]]:
    """Canonical content (a string, or already a list of content blocks) as Anthropic content blocks."""
    if isinstance(content, str):
        # The API rejects empty text blocks, so an empty string contributes nothing.
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list):
        return [dict(block) for block in content]
    return [] if content is None else [{"type": "text", "text": str(content)}]


def _blocks_of(message: Message) -> tuple[str, list[dict[str, Any]]]:
    """One canonical user/assistant/tool message -> (Anthropic role, content blocks)."""
    role = message.get("role")
    if role == "tool":
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.get("tool_call_id")}
        output = message.get("content")
        if output:
            block["content"] = output if isinstance(output, (str, list)) else str(output)
        return "user", [block]  # tool results travel in the user's turn
    if role == "assistant":
        blocks = _text_blocks(message.get("content"))
        for call in message.get("tool_calls") or ():
            blocks.append(
                {"type": "tool_use", "id": call.id, "name": call.name, "input": dict(call.arguments)}
            )
        return "assistant", blocks
    return "user", _text_blocks(message.get("content"))


def wire_messages(messages: Sequence[Message]) -> tuple[str | None, list[dict[str, Any]]]:
    """Canonical messages -> (top-level `system`, Anthropic `messages`).

    System messages move to the top-level system prompt. Consecutive messages of one role are merged into one
    turn: the API wants every tool result answering an assistant turn's `tool_use` blocks in the single user
    message right after it (results first, then any text, which canonical order already gives).
    """
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.get("role") in ("system", "developer"):
            text = message.get("content")
            system.append(text if isinstance(text, str) else "".join(b.get("text", "") for b in text or ()))
            continue
        role, blocks = _blocks_of(message)
        if not blocks and role == "assistant":
            continue  # an empty assistant turn is rejected by the API and says nothing
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    for wire in out:
        content = wire["content"]
        if not content:
            wire["content"] = ""
        elif len(content) == 1 and content[0].get("type") == "text" and set(content[0]) == {"type", "text"}:
            wire["content"] = content[0]["text"]  # the plain form, as people write it
    joined = "\n\n".join(text for text in system if text)
    return joined or None, out


def wire_tools(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    return [{"name": t.name, "description": t.description, "input_schema": dict(t.parameters)} for t in tools]


def _usage(raw: Any, previous: Usage | None = None) -> Usage:
    """Anthropic usage -> ours. Cached prompt tokens are reported apart from `input_tokens`; all of them were
    the prompt. Absent fields keep `previous` (a stream's message_delta repeats only what changed)."""
    base = previous or Usage()
    if not isinstance(raw, Mapping):
        return base
    prompt_fields = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    if any(raw.get(name) is not None for name in prompt_fields):
        prompt = sum(int(raw.get(name) or 0) for name in prompt_fields)
    else:
        prompt = base.prompt_tokens
    output = raw.get("output_tokens")
    return Usage(prompt, base.completion_tokens if output is None else int(output))


def stream_error(data: Mapping[str, Any]) -> ProviderError:
    """An `event: error` inside a stream (the HTTP status was already 200) as the typed error it stands for."""
    error = data.get("error")
    error = error if isinstance(error, Mapping) else {}
    kind = str(error.get("type") or "error")
    message = str(error.get("message") or kind)
    request_id = data.get("request_id")
    request_id = str(request_id) if request_id else None
    if kind == "overloaded_error":
        return ProviderServerError(message, status_code=529, provider=PROVIDER, request_id=request_id)
    if kind == "rate_limit_error":
        return RateLimitError(message, provider=PROVIDER, request_id=request_id)
    if kind == "api_error":
        return ProviderServerError(message, status_code=500, provider=PROVIDER, request_id=request_id)
    return ProviderError(f"stream failed: {kind}: {message}", provider=PROVIDER, request_id=request_id)


class _ToolUseAssembler:
    """Streamed `tool_use` blocks: id and name in content_block_start, the input as `input_json_delta`
    fragments of one JSON text, keyed by the block's index."""

    def __init__(self) -> None:
        self._blocks: dict[int, dict[str, Any]] = {}

    def start(self, index: int, block: Mapping[str, Any]) -> None:
        self._blocks[index] = {
            "id": str(block.get("id") or ""),
            "name": str(block.get("name") or ""),
            "input": block.get("input") or {},
            "json": "",
        }

    def feed(self, index: int, fragment: str) -> None:
        block = self._blocks.get(index)
        if block is not None:
            block["json"] += fragment

    def calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(b["id"], b["name"], parse_arguments(b["json"] or b["input"]))
            for _, b in sorted(self._blocks.items())
        )


async def decoded_events(stream: AsyncIterable[SSEEvent]) -> AsyncGenerator[dict[str, Any], None]:
    """An SSE stream's events as JSON objects, each with its `type` (pings and empty events dropped)."""
    async for event in stream:
        if event.event == "ping" or not event.data:
            continue
        try:
            data = json.loads(event.data)
        except ValueError as exc:
            raise malformed_event(event.data, PROVIDER) from exc
        if isinstance(data, dict):
            data.setdefault("type", event.event)
            yield data


class AnthropicChat(HttpChat):
    """Claude models over the Messages API (or anything speaking it, via base_url). Construction does no I/O."""

    path = MESSAGES_PATH
    stream_fields: ClassVar[Mapping[str, Any]] = {"stream": True}

    def __init__(self, config: LLMConfig) -> None:
        given = config.api_key
        key_provider = (
            None if given is None or isinstance(given, str) else given
        )  # a key provider, called per request
        base_url, api_key = resolve_credentials(config.base_url, "provider" if key_provider else given)  # type: ignore[arg-type]
        super().__init__(config, PROVIDER, base_url, credential_id(key_provider or api_key))
        headers = {**config.default_headers, "anthropic-version": API_VERSION}
        if api_key and key_provider is None:
            headers["x-api-key"] = api_key
        self._http = HttpClient(
            base_url,
            provider=PROVIDER,
            headers=headers,
            query=config.default_query,
            auth=KeyAuth(key_provider, header="x-api-key", scheme="") if key_provider is not None else None,
            timeout=config.timeout,
        )

    def _body(
        self, messages: Sequence[Message], temperature: float, limit: int | None, tools: Sequence[Tool] | None
    ) -> dict[str, Any]:
        # `reasoning_effort` has no Messages API equivalent; extended thinking goes in extra_params
        # ({"thinking": {"type": "enabled", "budget_tokens": ...}}).
        system, wire = wire_messages(messages)
        payload: dict[str, Any] = {
            "model": self.model,
            "max_tokens": limit or DEFAULT_MAX_TOKENS,
            "messages": wire,
            "temperature": temperature,
        }
        if system is not None:
            payload["system"] = system
        if tools:
            payload["tools"] = wire_tools(tools)
        payload.update(self.config.extra_params)
        return payload

    def _tokens(self, payload: dict[str, Any]) -> int:
        return estimate_tokens([payload.get("system"), payload["messages"]], payload.get("max_tokens"))

    def _annotate(self, exc: ProviderError) -> None:
        """Add what the transport could not know: the model, and which key to check on an auth failure."""
        if isinstance(exc, AuthenticationError) and exc.hint == AuthenticationError.default_hint:
            exc.hint = AUTH_HINT
        super()._annotate(exc)

    def _parse(self, data: Any) -> Completion:
        try:
            texts: list[str] = []
            calls: list[ToolCall] = []
            for block in data["content"]:
                if block["type"] == "text":
                    texts.append(block["text"])
                elif block["type"] == "tool_use":
                    calls.append(ToolCall(block["id"], block["name"], parse_arguments(block.get("input"))))
                # thinking/redacted_thinking blocks are not part of the answer
        except (KeyError, TypeError) as exc:
            raise ProviderError(
                f"malformed message: {str(data)[:200]}", provider=PROVIDER, model=self.model
            ) from exc
        stop = data.get("stop_reason")
        if stop == "refusal":
            raise RefusalError("".join(texts), provider=PROVIDER, model=self.model)
        return Completion(
            text="".join(texts),
            model=data.get("model") or self.model,
            usage=_usage(data.get("usage")),
            finish_reason=_FINISH.get(stop, stop),
            tool_calls=tuple(calls),
        )

    def _deltas(self, stream: AsyncIterable[SSEEvent]) -> AsyncGenerator[Delta, None]:
        return self._event_deltas(decoded_events(stream))

    async def _event_deltas(self, events: AsyncIterable[dict[str, Any]]) -> AsyncGenerator[Delta, None]:
        """message_start, content blocks (start/delta/stop), message_delta, message_stop -> our deltas, from
        our SSE reader or an SDK stream; a refusal raises at the end."""
        calls = _ToolUseAssembler()
        usage = Usage()
        stop: str | None = None
        done = False
        said: list[str] = []
        async for data in events:
            kind = data.get("type")
            if kind == "error":
                raise stream_error(data)
            if kind == "message_start":
                usage = _usage((data.get("message") or {}).get("usage"), usage)
            elif kind == "content_block_start":
                block = data.get("content_block") or {}
                if block.get("type") == "tool_use":
                    calls.start(int(data.get("index", 0)), block)
                elif block.get("type") == "text" and block.get("text"):
                    said.append(block["text"])
                    yield Delta(text=block["text"])
            elif kind == "content_block_delta":
                delta = data.get("delta") or {}
                if delta.get("type") == "text_delta" and delta.get("text"):
                    said.append(delta["text"])
                    yield Delta(text=delta["text"])
                elif delta.get("type") == "input_json_delta":
                    calls.feed(int(data.get("index", 0)), delta.get("partial_json") or "")
            elif kind == "message_delta":
                stop = (data.get("delta") or {}).get("stop_reason") or stop
                usage = _usage(data.get("usage"), usage)  # cumulative totals: they replace, not add
            elif kind == "message_stop":
                done = True
                break
        if not done:
            raise ProviderConnectionError("the stream ended before the model finished", provider=PROVIDER)
        self.usage += usage
        if stop == "refusal":
            raise RefusalError("".join(said), provider=PROVIDER, model=self.model)
        # One closing delta with everything only known at the end.
        yield Delta(usage=usage, finish_reason=_FINISH.get(stop or "", stop), tool_calls=calls.calls())
