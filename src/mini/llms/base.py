"""The `LLM` protocol (async-only), its value types, and choosing a provider from configuration."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from mini import _registry
from mini.config import OFFLINE_LLM_NAMES, LLMConfig, load_settings

Message = dict[str, str]


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

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
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of a streamed completion: text, and on the last piece usage/finish_reason when known."""

    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None


@runtime_checkable
class LLM(Protocol):
    """A chat model. No I/O in `__init__`. `stream` is an async generator; closing it cancels the request."""

    name: str

    async def complete(
        self, messages: Sequence[Message], *, temperature: float | None = None, max_tokens: int | None = None
    ) -> Completion: ...

    def stream(
        self, messages: Sequence[Message], *, temperature: float | None = None, max_tokens: int | None = None
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
