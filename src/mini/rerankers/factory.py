"""Choosing a reranker from `RerankerConfig.kind`: none/passthrough, llm, cross-encoder, cohere."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mini.errors import ConfigurationError
from mini.rerankers.base import PassThroughReranker, Reranker

if TYPE_CHECKING:
    from mini.config import RerankerConfig
    from mini.llms.base import LLM

from mini._names import RERANKER_ALIASES as _ALIASES
from mini._names import RERANKER_SPELLINGS as KINDS


def _option(config: RerankerConfig, name: str, default: Any) -> Any:
    # None means "the reranker's default"; getattr also accepts look-alike config objects.
    value = getattr(config, name, None)
    return default if value is None else value


def create_reranker(config: RerankerConfig, llm: LLM | None = None) -> Reranker:
    """The reranker `config` asks for; `llm` is the chat model an `llm` reranker scores with.

    Options read from `config` when present: `max_concurrency` (llm, cohere), `model_path`, `batch_size`,
    `device` (cross-encoder), `model`, `api_key`, `base_url`, `timeout` (cohere).
    """
    raw = str(config.kind or "none")
    kind = _ALIASES.get(raw.strip().lower())
    if kind is None:
        raise ConfigurationError(f"unknown reranker kind {raw!r}; known: {', '.join(KINDS)}")
    if kind == "none":
        return PassThroughReranker()
    if kind == "llm":
        if llm is None:
            raise ConfigurationError(
                "the 'llm' reranker needs a chat model: configure one (LLMConfig or MINI_LLM), "
                "or choose another reranker kind"
            )
        from mini.rerankers.llm import LLMReranker

        return LLMReranker(llm, max_concurrency=_option(config, "max_concurrency", 16))
    if kind == "cross-encoder":
        model_path = _option(config, "model_path", None)
        if not model_path:
            raise ConfigurationError(
                "the 'cross-encoder' reranker needs model_path: a local sentence-transformers model directory"
            )
        from mini.rerankers.cross_encoder import CrossEncoderReranker

        return CrossEncoderReranker(
            model_path, batch_size=_option(config, "batch_size", 32), device=_option(config, "device", None)
        )
    from mini.rerankers.cohere import DEFAULT_BASE_URL, DEFAULT_MODEL, CohereReranker

    api_key = _option(config, "api_key", None)
    if hasattr(api_key, "get_secret_value"):  # a pydantic SecretStr
        api_key = api_key.get_secret_value()
    return CohereReranker(
        _option(config, "model", DEFAULT_MODEL),
        api_key=api_key,
        base_url=_option(config, "base_url", DEFAULT_BASE_URL),
        timeout=_option(config, "timeout", 30.0),
        max_concurrency=_option(config, "max_concurrency", 16),
    )
