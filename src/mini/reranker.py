"""mini-rag 0.1.3's `mini.reranker`, thin over `mini.rerankers` (deprecated: see MIGRATING.md).

0.1.3 rerankers were synchronous and ranked plain strings: `rerank(query, documents, top_k)` returned
`RerankResult(text, score, index)`. Here each 0.1.3 class wraps the async reranker of `mini.rerankers` and runs
it on the portal loop (usable in Jupyter too); `as_reranker` turns any 0.1.3 `BaseReranker`, including a
user's own subclass, into the async `Reranker` the pipeline calls (a user's sync `rerank` runs in a thread).
Constructing a 0.1.3 class warns once, naming its replacement.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from mini import _portal
from mini._deprecation import warn_renamed
from mini._names import RERANKER_ALIASES
from mini.errors import InvalidInputError
from mini.types import RetrievalResult

if TYPE_CHECKING:
    from mini.config import RerankerConfig
    from mini.llms.base import LLM
    from mini.rerankers.base import Reranker

__all__ = [
    "BaseReranker",
    "CohereReranker",
    "LLMReranker",
    "RerankResult",
    "SentenceTransformerReranker",
    "apply_legacy_keywords",
    "as_reranker",
    "create_reranker",
]

# 0.1.3's type names that the new kinds spell differently.
LEGACY_KINDS = {
    "sentence-transformer": "cross-encoder",
    "local": "cross-encoder",
    "noop": "none",
    "disabled": "none",
}
# 0.1.3's `RerankerConfig(kwargs=...)` keys -> `RerankerConfig` fields.
LEGACY_OPTIONS = {
    "api_key": "api_key",
    "model": "model",
    "model_name": "model_path",
    "device": "device",
    "base_url": "base_url",
    "timeout": "timeout",
    "batch_size": "batch_size",
    "max_concurrency": "max_concurrency",
}
COHERE_013_MODEL = "rerank-english-v3.0"  # 0.1.3's default; still served by Cohere
CROSS_ENCODER_013_MODEL = "cross-encoder/ms-marco-MiniLM-L-6-v2"


@dataclass
class RerankResult:
    """0.1.3's result of `BaseReranker.rerank`: `index` is the document's position in the input list."""

    text: str
    score: float
    index: int
    metadata: dict[str, Any] | None = None


class BaseReranker(ABC):
    """0.1.3's reranker base class. Subclass it and implement the synchronous `rerank`; pass an instance as
    `AgenticRAG(reranker=...)` (it runs in a thread there). New code implements `mini.rerankers.Reranker`."""

    @abstractmethod
    def rerank(self, query: str, documents: list[str], top_k: int | None = None) -> list[RerankResult]:
        """`documents` best first as `RerankResult`s, at most `top_k` (None: all)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class _Wrapping(BaseReranker):
    """A 0.1.3 class over one of `mini.rerankers`: the sync `rerank` runs the async one on the portal."""

    def __init__(self, reranker: Reranker) -> None:
        self.reranker = reranker

    def rerank(self, query: str, documents: list[str], top_k: int | None = None) -> list[RerankResult]:
        return _portal.run(self.rerank_async(query, documents, top_k))

    async def rerank_async(
        self, query: str, documents: Sequence[str], top_k: int | None = None
    ) -> list[RerankResult]:
        candidates = [RetrievalResult(str(i), text, 0.0) for i, text in enumerate(documents)]
        if not candidates:
            return []
        ranked = await self.reranker.rerank(query, candidates, top_k=top_k or len(candidates))
        return [RerankResult(hit.text, hit.score, int(hit.id)) for hit in ranked]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reranker.name!r})"


class CohereReranker(_Wrapping):
    """0.1.3's Cohere reranker, now `mini.rerankers.CohereReranker` (no cohere SDK needed). `api_key`
    defaults to COHERE_API_KEY; `max_chunks_per_doc` is Cohere's v2 `max_tokens_per_doc`."""

    def __init__(
        self, api_key: str | None = None, model: str = COHERE_013_MODEL, max_chunks_per_doc: int | None = None
    ) -> None:
        from mini.rerankers.cohere import CohereReranker as Cohere

        warn_renamed("mini.reranker.CohereReranker", "mini.rerankers.CohereReranker")
        self.model = model
        super().__init__(Cohere(model, api_key=api_key, max_tokens_per_doc=max_chunks_per_doc))


class SentenceTransformerReranker(_Wrapping):
    """0.1.3's cross-encoder reranker, now `mini.rerankers.CrossEncoderReranker`: `model_name` must be a local
    model directory (models are never downloaded); needs the `torch` extra."""

    def __init__(self, model_name: str = CROSS_ENCODER_013_MODEL, device: str | None = None) -> None:
        from mini.rerankers.cross_encoder import CrossEncoderReranker

        warn_renamed("mini.reranker.SentenceTransformerReranker", "mini.rerankers.CrossEncoderReranker")
        self.model_name = model_name
        super().__init__(CrossEncoderReranker(model_name, device=device))


class LLMReranker(_Wrapping):
    """0.1.3's LLM reranker, now `mini.rerankers.LLMReranker`. `client` is an OpenAI client (its `base_url`
    and `api_key` are used, the calls are our own) or a `mini.llms` LLM; scores are in [0, 1] as before."""

    def __init__(
        self,
        client: Any,
        model: str = "gpt-4o-mini",
        temperature: float = 0.3,
        max_tokens: int = 10,
        truncate_length: int = 500,
    ) -> None:
        from mini.rerankers.llm import LLMReranker as Scorer
        from mini.rerankers.llm import score_messages

        warn_renamed("mini.reranker.LLMReranker", "mini.rerankers.LLMReranker(llm)")
        self.model = model
        llm = _llm_from_client(client, model, temperature)

        def prompt(query: str, passage: str) -> Any:
            return score_messages(query, passage, max_chars=truncate_length)

        # 0.1.3 asked for 0-100 in 10 tokens; the 0-10 prompt fits the same budget.
        super().__init__(Scorer(llm, prompt=prompt, max_tokens=max(max_tokens, 16)))


class _PassThrough(_Wrapping):
    def __init__(self) -> None:
        from mini.rerankers.base import PassThroughReranker

        super().__init__(PassThroughReranker())


def _llm_from_client(client: Any, model: str, temperature: float) -> LLM:
    from mini.config import LLMConfig
    from mini.llms.base import LLM, create_llm

    if isinstance(client, LLM):
        return client
    base_url = getattr(client, "base_url", None)
    api_key = getattr(client, "api_key", None)
    name = model if ":" in model else f"openai:{model}"
    config = LLMConfig(
        name, base_url=str(base_url) if base_url else None, api_key=api_key, temperature=temperature
    )
    return create_llm(config)


def create_reranker(reranker_type: str = "cohere", **kwargs: Any) -> BaseReranker:
    """0.1.3's factory: 'cohere', 'sentence-transformer' (or 'cross-encoder', 'local'), 'llm' (needs
    `client=`), 'none'. New code: `mini.rerankers.create_reranker(RerankerConfig(kind=...), llm)`."""
    warn_renamed("mini.reranker.create_reranker", "mini.rerankers.create_reranker(RerankerConfig(kind=...))")
    kind = reranker_type.strip().lower()
    kind = LEGACY_KINDS.get(kind, RERANKER_ALIASES.get(kind, kind))
    if kind == "cohere":
        return CohereReranker(**kwargs)
    if kind == "cross-encoder":
        return SentenceTransformerReranker(**kwargs)
    if kind == "llm":
        return LLMReranker(**kwargs)
    if kind == "none":
        return _PassThrough()
    raise InvalidInputError(
        f"unknown reranker type {reranker_type!r}; choose 'cohere', 'sentence-transformer', 'llm' or 'none'"
    )


class _LegacyAdapter:
    """The async `Reranker` protocol over a user's 0.1.3 `BaseReranker` (its sync `rerank` runs in a thread)."""

    def __init__(self, legacy: BaseReranker) -> None:
        self.legacy = legacy
        self.name = f"custom:{type(legacy).__name__}"

    async def rerank(
        self, query: str, candidates: Sequence[RetrievalResult], *, top_k: int
    ) -> list[RetrievalResult]:
        texts = [hit.text for hit in candidates]
        results = await asyncio.to_thread(self.legacy.rerank, query, texts, top_k)
        ranked: list[RetrievalResult] = []
        for result in results[:top_k]:
            if not 0 <= result.index < len(candidates):
                raise InvalidInputError(
                    f"{self.name} returned index {result.index} for {len(candidates)} documents"
                )
            ranked.append(replace(candidates[result.index], score=float(result.score)))
        return ranked


def as_reranker(reranker: Any) -> Reranker:
    """`reranker` as the pipeline's async `Reranker`: a new-API reranker as is, a 0.1.3 class by the reranker
    it wraps, a user's 0.1.3 `BaseReranker` subclass through a thread."""
    if isinstance(reranker, _Wrapping):
        return reranker.reranker
    if isinstance(reranker, BaseReranker):
        return _LegacyAdapter(reranker)
    return reranker


def apply_legacy_keywords(
    config: RerankerConfig, kind: str | None, options: Mapping[str, Any] | None, custom: Any
) -> None:
    """`RerankerConfig(type=, kwargs=, custom_reranker=)` (0.1.3) onto the new fields, warning once each.
    Called from `RerankerConfig.__post_init__` (the object is frozen: fields are set with object.__setattr__)."""
    if kind is not None:
        warn_renamed("RerankerConfig(type=...)", "RerankerConfig(kind=...)", stacklevel=5)
        spelled = kind.strip().lower()
        object.__setattr__(config, "kind", LEGACY_KINDS.get(spelled, spelled))
    if options:
        warn_renamed(
            "RerankerConfig(kwargs={...})",
            "RerankerConfig's own fields (model=, api_key=, ...)",
            stacklevel=5,
        )
        unknown = sorted(set(options) - set(LEGACY_OPTIONS))
        if unknown:
            raise InvalidInputError(
                f"RerankerConfig(kwargs=...): unsupported {', '.join(unknown)}; supported: {', '.join(LEGACY_OPTIONS)}"
            )
        for key, value in options.items():
            object.__setattr__(config, LEGACY_OPTIONS[key], value)
    if custom is not None:
        warn_renamed("RerankerConfig(custom_reranker=...)", "AgenticRAG(reranker=...)", stacklevel=5)
        object.__setattr__(config, "custom", custom)
