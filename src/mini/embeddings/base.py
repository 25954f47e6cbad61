"""The `Embedder` protocol (async-only) and the `EmbeddingModel` facade with sync twins."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from mini import _portal, _registry
from mini.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np

InputType = Literal["query", "document"]


@runtime_checkable
class Embedder(Protocol):
    """What an embedding backend implements. No I/O in `__init__`; clients open on first use.

    `embed` takes any number of texts (the backend batches them) and returns a float32 array of shape
    (len(texts), dimension) with L2-normalised rows, in input order. CPU-bound backends run in threads.
    """

    name: str

    @property
    def dimension(self) -> int | None: ...

    async def embed(self, texts: Sequence[str], *, input_type: InputType = "document") -> np.ndarray: ...

    async def aclose(self) -> None: ...


def create_embedder(
    model: str, *, base_url: str | None, api_key: str | None, dimension: int | None, batch_size: int | None
) -> Embedder:
    provider, name = _registry.split_model(model, default_provider="openai")
    cls = _registry.load(_registry.lookup(_registry.EMBEDDERS, provider, "embedding provider"))
    embedder: Embedder = cls(
        name, base_url=base_url, api_key=api_key, dimension=dimension, batch_size=batch_size
    )
    return embedder


class EmbeddingModel:
    """Turns text into vectors. Default: the bundled all-MiniLM-L6-v2 (384 dims), run locally with onnxruntime.

    `model="openai:text-embedding-3-small"` uses any OpenAI-compatible server (`base_url`/OPENAI_BASE_URL).
    Construction does no I/O; the model loads (or the client opens) on first use.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        dimension: int | None = None,
        batch_size: int | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        if embedder is None:
            if model is None:
                from mini.config import load_settings

                model = load_settings().embedding_model
            embedder = create_embedder(
                model, base_url=base_url, api_key=api_key, dimension=dimension, batch_size=batch_size
            )
        self.embedder = embedder

    @property
    def name(self) -> str:
        return self.embedder.name

    @property
    def dimension(self) -> int | None:
        """The vector size, or None until the first call for remote models of unknown size."""
        return self.embedder.dimension

    def __repr__(self) -> str:
        return f"EmbeddingModel({self.name!r})"

    async def embed_async(self, texts: Sequence[str], *, input_type: InputType = "document") -> np.ndarray:
        """Embed texts into a (n, dimension) float32 array; the fast path used by the pipeline."""
        if isinstance(texts, str):
            raise InvalidInputError("expected a list of texts, got a single string")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidInputError(f"text {i} is {type(text).__name__}, not str")
            if not text.strip():
                raise InvalidInputError(f"text {i} is empty; empty text has no meaningful embedding")
        if not texts:
            import numpy as np

            return np.zeros((0, self.dimension or 0), dtype=np.float32)
        return await self.embedder.embed(list(texts), input_type=input_type)

    async def embed_query_async(self, query: str) -> list[float]:
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError("the query is empty")
        vectors = await self.embed_async([query], input_type="query")
        return [float(x) for x in vectors[0]]

    async def embed_chunks_async(self, chunks: Sequence[str]) -> list[list[float]]:
        vectors = await self.embed_async(chunks, input_type="document")
        return vectors.tolist()

    async def aclose(self) -> None:
        await self.embedder.aclose()

    # Sync twins: same signatures, run on the portal loop.
    def embed(self, texts: Sequence[str], *, input_type: InputType = "document") -> np.ndarray:
        return _portal.run(self.embed_async(texts, input_type=input_type))

    def embed_query(self, query: str) -> list[float]:
        return _portal.run(self.embed_query_async(query))

    def embed_chunks(self, chunks: Sequence[str]) -> list[list[float]]:
        return _portal.run(self.embed_chunks_async(chunks))

    def close(self) -> None:
        _portal.run(self.aclose())
