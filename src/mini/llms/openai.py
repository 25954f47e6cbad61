"""OpenAI-compatible chat (OpenAI, Azure OpenAI, vLLM, Ollama, LM Studio, ...) over `/chat/completions`."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from mini._http import credential_id
from mini._openai import AZURE_PROVIDER, PROVIDER, azure_http, azure_path, openai_http, resolve_credentials
from mini.config import LLMConfig
from mini.errors import ProviderConnectionError, ProviderError, RefusalError
from mini.llms.base import (
    Completion,
    Delta,
    HttpChat,
    Message,
    ProviderChat,
    Tool,
    ToolCall,
    Usage,
    estimate_tokens,
    malformed_event,
    parse_arguments,
)

if TYPE_CHECKING:
    from mini._http import SSEStream

_FINISH = {"tool_calls": "tool_calls", "function_call": "tool_calls", "stop": "stop", "length": "length"}
# What a stream of decoded chunks ends with when the server said `[DONE]` (SDK streams end without it).
DONE: dict[str, Any] = {}


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    return Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0))


def wire_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Canonical messages -> OpenAI's: tool calls carry their arguments as JSON text."""
    out: list[dict[str, Any]] = []
    for message in messages:
        calls = message.get("tool_calls")
        if not calls:
            out.append(dict(message))
            continue
        wire = {k: v for k, v in message.items() if k != "tool_calls"}
        wire["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(dict(call.arguments))},
            }
            for call in calls
        ]
        out.append(wire)
    return out


def wire_tools(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": dict(t.parameters)},
        }
        for t in tools
    ]


class _ToolCallAssembler:
    """Streamed tool calls arrive as fragments keyed by index (id and name first, arguments in pieces)."""

    def __init__(self) -> None:
        self._parts: dict[int, dict[str, str]] = {}

    def feed(self, deltas: Any) -> None:
        for delta in deltas or []:
            part = self._parts.setdefault(int(delta.get("index", 0)), {"id": "", "name": "", "arguments": ""})
            part["id"] = delta.get("id") or part["id"]
            function = delta.get("function") or {}
            part["name"] = function.get("name") or part["name"]
            part["arguments"] += function.get("arguments") or ""

    def calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(id=p["id"], name=p["name"], arguments=parse_arguments(p["arguments"]))
            for _, p in sorted(self._parts.items())
        )


async def decoded_chunks(stream: SSEStream) -> AsyncGenerator[Any, None]:
    """An SSE stream's chunks as JSON, then `DONE` if the server ended it with `[DONE]`."""
    async for event in stream:
        if event.data == "[DONE]":
            yield DONE
            return
        try:
            yield json.loads(event.data)
        except ValueError as exc:
            raise malformed_event(event.data, PROVIDER, "chunk") from exc


class OpenAIChat(HttpChat):
    """Chat completions against any OpenAI-compatible endpoint. Construction does no I/O."""

    path = "/chat/completions"
    stream_fields: ClassVar[Mapping[str, Any]] = {"stream": True, "stream_options": {"include_usage": True}}
    supports_response_format = True

    def __init__(self, config: LLMConfig) -> None:
        base_url, api_key = resolve_credentials(config.base_url, config.api_key)
        super().__init__(config, PROVIDER, base_url, credential_id(api_key))
        self._http = openai_http(
            base_url,
            api_key,
            timeout=config.timeout,
            default_headers=config.default_headers,
            default_query=config.default_query,
        )

    def _body(
        self, messages: Sequence[Message], temperature: float, limit: int | None, tools: Sequence[Tool] | None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": wire_messages(messages),
            "temperature": temperature,
        }
        if self.config.reasoning_effort is not None:
            # Reasoning models take an effort and count hidden reasoning in max_completion_tokens.
            payload["reasoning_effort"] = self.config.reasoning_effort
            if limit is not None:
                payload["max_completion_tokens"] = limit
        elif limit is not None:
            payload["max_tokens"] = limit  # what vLLM, Ollama and LM Studio understand
        if tools:
            payload["tools"] = wire_tools(tools)
        payload.update(self.config.extra_params)
        return payload

    def _add_format(self, payload: dict[str, Any], fmt: dict[str, Any]) -> None:
        payload["response_format"] = fmt

    def _tokens(self, payload: dict[str, Any]) -> int:
        limit = payload.get("max_completion_tokens") or payload.get("max_tokens")
        return estimate_tokens(payload["messages"], limit)

    def _parse(self, data: Any) -> Completion:
        try:
            choice = data["choices"][0]
            message = choice["message"]
            refusal = message.get("refusal")
            text = message.get("content") or ""
            calls = tuple(
                ToolCall(c["id"], c["function"]["name"], parse_arguments(c["function"].get("arguments")))
                for c in message.get("tool_calls") or []
            )
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ProviderError(
                f"malformed chat completion: {str(data)[:200]}", provider=PROVIDER, model=self.model
            ) from exc
        if refusal:
            raise RefusalError(str(refusal), provider=PROVIDER, model=self.model)
        finish = choice.get("finish_reason")
        return Completion(
            text=text,
            model=data.get("model") or self.model,
            usage=_usage(data.get("usage")),
            finish_reason=_FINISH.get(finish, finish),
            tool_calls=calls,
        )

    def _deltas(self, stream: SSEStream) -> AsyncGenerator[Delta, None]:
        return self._chunk_deltas(decoded_chunks(stream))

    async def _chunk_deltas(self, chunks: AsyncIterable[Any]) -> AsyncGenerator[Delta, None]:
        """Decoded chunks (from our SSE reader or an SDK stream) -> deltas; a refusal raises at the end."""
        calls = _ToolCallAssembler()
        usage: Usage | None = None
        finish: str | None = None
        refusal: list[str] = []
        done = False
        async for chunk in chunks:
            if chunk is DONE:
                done = True
                break
            if chunk.get("error"):
                raise ProviderError(f"stream failed: {chunk['error']}", provider=PROVIDER)
            if chunk.get("usage"):
                usage = _usage(chunk["usage"])
            choices = chunk.get("choices") or []
            choice = choices[0] if choices else {}
            delta = choice.get("delta") or {}
            calls.feed(delta.get("tool_calls"))
            if delta.get("refusal"):
                refusal.append(delta["refusal"])
            finish = choice.get("finish_reason") or finish
            text = delta.get("content") or ""
            if text:
                yield Delta(text=text)
        if not done and finish is None:
            raise ProviderConnectionError("the stream ended before the model finished", provider=PROVIDER)
        if usage is not None:
            self.usage += usage
        if refusal:
            raise RefusalError("".join(refusal), provider=PROVIDER, model=self.model)
        # One closing delta with everything only known at the end.
        yield Delta(usage=usage, finish_reason=_FINISH.get(finish or "", finish), tool_calls=calls.calls())


class AzureOpenAIChat(OpenAIChat):
    """Azure OpenAI by configuration: `azure:<deployment>`, `base_url` the resource endpoint, `api_version`.
    Requests go to `{base_url}/openai/deployments/{deployment}/chat/completions?api-version=...`."""

    def __init__(self, config: LLMConfig) -> None:
        ProviderChat.__init__(
            self, config, AZURE_PROVIDER, config.base_url or "", credential_id(config.api_key)
        )
        self.path = azure_path(self.model, "chat/completions")
        self._http = azure_http(
            config.base_url,
            config.api_key,
            config.api_version,
            timeout=config.timeout,
            default_headers=config.default_headers,
            default_query=config.default_query,
        )
