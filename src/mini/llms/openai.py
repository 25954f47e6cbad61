"""OpenAI-compatible chat (OpenAI, vLLM, Ollama, LM Studio, ...) over the `/chat/completions` wire format."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from mini import _registry
from mini._limits import RetryPolicy, limiter_for
from mini._openai import PROVIDER, openai_http, resolve_credentials
from mini.config import LLMConfig
from mini.errors import ProviderError
from mini.llms.base import Completion, Delta, Message, Usage


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    return Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0))


class OpenAIChat:
    """Chat completions against any OpenAI-compatible endpoint. Construction does no I/O."""

    def __init__(self, config: LLMConfig) -> None:
        _provider, self.model = _registry.split_model(config.model, default_provider="openai")
        self.name = f"openai:{self.model}"
        self.config = config
        base_url, api_key = resolve_credentials(config.base_url, config.api_key)
        self._http = openai_http(base_url, api_key, timeout=config.timeout)
        self._limiter = limiter_for(
            base_url,
            max_in_flight=config.max_concurrency,
            policy=RetryPolicy(max_attempts=config.max_retries + 1),
        )

    def _payload(
        self, messages: Sequence[Message], temperature: float | None, max_tokens: int | None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": list(messages),
            "temperature": self.config.temperature if temperature is None else temperature,
            **self.config.extra_params,
        }
        limit = self.config.max_tokens if max_tokens is None else max_tokens
        if limit is not None:
            payload["max_tokens"] = limit
        return payload

    async def complete(
        self, messages: Sequence[Message], *, temperature: float | None = None, max_tokens: int | None = None
    ) -> Completion:
        payload = self._payload(messages, temperature, max_tokens)
        data = await self._limiter.call(lambda: self._http.post_json("/chat/completions", payload))
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ProviderError(f"malformed chat completion: {str(data)[:200]}", provider=PROVIDER) from exc
        return Completion(
            text=text,
            model=data.get("model") or self.model,
            usage=_usage(data.get("usage")),
            finish_reason=choice.get("finish_reason"),
        )

    async def stream(
        self, messages: Sequence[Message], *, temperature: float | None = None, max_tokens: int | None = None
    ) -> AsyncIterator[Delta]:
        payload = self._payload(messages, temperature, max_tokens)
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
        # The slot is held for the whole stream: the provider is busy until the last token.
        async with self._limiter.hold(lambda: self._http.open_sse("/chat/completions", payload)) as stream:
            try:
                async for event in stream:
                    if event.data == "[DONE]":
                        break
                    try:
                        chunk = json.loads(event.data)
                    except ValueError as exc:
                        raise ProviderError(
                            f"malformed stream chunk: {event.data[:200]!r}", provider=PROVIDER
                        ) from exc
                    if "error" in chunk:
                        raise ProviderError(f"stream failed: {chunk['error']}", provider=PROVIDER)
                    usage = _usage(chunk["usage"]) if chunk.get("usage") else None
                    choices = chunk.get("choices") or []
                    choice = choices[0] if choices else {}
                    text = (choice.get("delta") or {}).get("content") or ""
                    finish = choice.get("finish_reason")
                    if text or usage is not None or finish:
                        yield Delta(text=text, usage=usage, finish_reason=finish)
            finally:
                await stream.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
