"""mini-rag 0.1.3's `EmbeddingModel` and `EmbeddingConfig`: an OpenAI-compatible embedder configured the 0.1.3 way,
as a subclass of `mini.EmbeddingModel` (so it goes anywhere the new one does, e.g. `AgenticRAG`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mini import _portal
from mini._deprecation import warn_renamed
from mini.embeddings.base import EmbeddingModel as _EmbeddingModel
from mini.errors import ConfigurationError

__all__ = ["EmbeddingConfig", "EmbeddingModel"]

DEFAULT_MODEL = "text-embedding-3-small"  # 0.1.3's default when EMBEDDING_MODEL is unset


class EmbeddingConfig(BaseModel):
    """0.1.3's embedding settings; unset fields come from OPENAI_API_KEY, OPENAI_BASE_URL and EMBEDDING_MODEL."""

    model_config = ConfigDict(extra="forbid")

    api_key: str = Field(default_factory=lambda: os.getenv("OPENAI_API_KEY", ""))
    base_url: str | None = Field(default_factory=lambda: os.getenv("OPENAI_BASE_URL"))
    model: str = Field(default_factory=lambda: os.getenv("EMBEDDING_MODEL", DEFAULT_MODEL))
    dimensions: int | None = None
    timeout: float = 60.0
    max_retries: int = 3


def _text_of(chunk: Any) -> str:
    # 0.1.3 embedded chunk objects (anything with `.text`: its chonkie chunks, our TextChunk and Chunk); plain
    # strings are accepted too, as its signature (`List[str]`) promised.
    text = getattr(chunk, "text", chunk)
    return text if isinstance(text, str) else chunk


class EmbeddingModel(_EmbeddingModel):
    """0.1.3's signature: `EmbeddingModel(api_key=, base_url=, model=, dimensions=, timeout=, max_retries=,
    config=)`. Always an OpenAI-compatible endpoint (as in 0.1.3); a missing key raises `ConfigurationError`.

    New code: `mini.EmbeddingModel("openai:<model>", api_key=..., base_url=..., dimension=...)`.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str | None = None,
        dimensions: int | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        config: EmbeddingConfig | None = None,
    ) -> None:
        warn_renamed(
            "mini.embedding.EmbeddingModel(api_key=, base_url=, model=, dimensions=)",
            'mini.EmbeddingModel("openai:<model>", api_key=, base_url=, dimension=)',
        )
        if config is None:
            # As 0.1.3: an empty argument falls back to the environment (EmbeddingConfig's defaults).
            given = {"api_key": api_key, "base_url": base_url, "model": model}
            config = EmbeddingConfig(
                **{k: v for k, v in given.items() if v},
                dimensions=dimensions,
                timeout=timeout,
                max_retries=max_retries,
            )
        if not config.api_key:
            raise ConfigurationError(
                "an API key is required: set OPENAI_API_KEY or pass api_key= "
                "(for a local server that needs none, any placeholder such as 'not-needed')"
            )
        self.config = config
        super().__init__(
            f"openai:{config.model}",
            base_url=config.base_url,
            api_key=config.api_key,
            dimension=config.dimensions,
            timeout=config.timeout,
            max_retries=config.max_retries,
        )

    def __repr__(self) -> str:
        base_url = self.config.base_url or "default"
        return (
            f"EmbeddingModel(model={self.config.model!r}, base_url={base_url!r}, "
            f"dimensions={self.config.dimensions})"
        )

    async def embed_chunks_async(self, chunks: Sequence[Any]) -> list[list[float]]:
        """One vector per chunk, in order; chunks are strings or objects with a `.text`."""
        return await super().embed_chunks_async([_text_of(chunk) for chunk in chunks])

    async def aembed_chunks(self, chunks: Sequence[Any]) -> list[list[float]]:
        """0.1.3's name for `embed_chunks_async`."""
        warn_renamed("EmbeddingModel.aembed_chunks", "EmbeddingModel.embed_chunks_async")
        return await self.embed_chunks_async(chunks)

    async def aembed_query(self, query: str) -> list[float]:
        """0.1.3's name for `embed_query_async`."""
        warn_renamed("EmbeddingModel.aembed_query", "EmbeddingModel.embed_query_async")
        return await self.embed_query_async(query)

    def embed_chunks(self, chunks: Sequence[Any]) -> list[list[float]]:
        # Written out, not `sync_twin`: mypy checks a twin assigned in a subclass against the base's type.
        return _portal.run(self.embed_chunks_async(chunks))
