"""The `Embedder` protocol (async-only) and the `EmbeddingModel` facade with sync twins."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from mini import _portal, _registry
from mini._batching import Coalescer
from mini._checks import at_least
from mini._deprecation import InitSignature
from mini.errors import BadRequestError, ConfigurationError, InvalidInputError

if TYPE_CHECKING:
    import numpy as np

    from mini._http import ApiKey

InputType = Literal["query", "document"]

logger = logging.getLogger("mini.embeddings")


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


# Micro-batching: calls of at most this many texts wait `batch_window_ms` for company and share one request.
# Larger calls (ingestion) are batches already and go straight through.
COALESCE_MAX_TEXTS = 32


def create_embedder(
    model: str,
    *,
    base_url: str | None,
    api_key: ApiKey | None,
    dimension: int | None,
    batch_size: int | None,
    **remote_options: Any,
) -> Embedder:
    """`remote_options` (timeout, max_concurrency, max_retries, requests/tokens per minute) are given only
    when set; a local model rejects them with a clear error rather than silently ignoring them."""
    provider, name = _registry.split_model(model, default_provider="openai")
    if remote_options.get("client") is not None:  # the user's own SDK client (mini.embeddings.sdk)
        from mini.embeddings.sdk import SDKEmbedder

        if provider not in ("openai", "azure"):
            raise ConfigurationError(
                f"EmbeddingModel(client=...) needs the client's model name, e.g. "
                f"'openai:text-embedding-3-small', not {model!r}"
            )

        cls: Any = SDKEmbedder
    else:
        cls = _registry.load(_registry.lookup(_registry.EMBEDDERS, provider, "embedding provider"))
    try:
        embedder: Embedder = cls(
            name,
            base_url=base_url,
            api_key=api_key,
            dimension=dimension,
            batch_size=batch_size,
            **remote_options,
        )
    except TypeError as exc:
        if not remote_options:
            raise
        raise ConfigurationError(
            f"{', '.join(sorted(remote_options))} only apply to remote embedding providers, not {model!r}"
        ) from exc
    return embedder


async def embed_splitting_rejected(
    embedder: Embedder, texts: list[str], *, input_type: InputType
) -> tuple[list[Any], int]:
    """Embed `texts` in one request; if the provider rejects the batch (400), retry text by text so one bad
    text fails alone. Returns one vector or exception per text, and the number of requests made.

    An unknown model or endpoint (404) is raised at once: every single-text retry would fail the same way.
    """
    try:
        vectors = await embedder.embed(texts, input_type=input_type)
    except BadRequestError as exc:
        if len(texts) == 1 or exc.status_code == 404:
            raise
        logger.info("an embedding batch was rejected (%s); retrying its %d texts one by one", exc, len(texts))
        singles = await asyncio.gather(
            *(embedder.embed([t], input_type=input_type) for t in texts), return_exceptions=True
        )
        return [r if isinstance(r, BaseException) else r[0] for r in singles], 1 + len(texts)
    return list(vectors), 1


# Constructor keywords only mini-rag 0.1.3's model had: `EmbeddingModel(...)` given any is `mini.embedding`'s.
_EMBEDDING_013_KEYWORDS = frozenset({"dimensions", "config"})


class EmbeddingModel:
    """Turns text into vectors. Default: the bundled all-MiniLM-L6-v2 (384 dims), run locally with onnxruntime.

    `model="openai:text-embedding-3-small"` uses any OpenAI-compatible server (`base_url`/OPENAI_BASE_URL).
    Construction does no I/O; the model loads (or the client opens) on first use.

    Concurrent small calls (questions) arriving within `batch_window_ms` share one request to the provider
    (or one local-model batch); each caller gets its own vectors. `batch_window_ms=0` turns that off.
    Remote providers also take `timeout`, `max_concurrency`, `max_retries`, `requests_per_minute` and
    `tokens_per_minute`; limits are shared with every other caller of the same endpoint and key. And, as in
    `LLMConfig`: `default_headers`, `default_query`, `api_version` (with `azure:<deployment>`), an `api_key`
    callable, or `client=` your own `openai.AsyncOpenAI`/`AsyncAzureOpenAI`.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> EmbeddingModel:
        if cls is EmbeddingModel and not _EMBEDDING_013_KEYWORDS.isdisjoint(kwargs):
            from mini.embedding import EmbeddingModel as Embedding013  # 0.1.3's signature (it warns)

            return super().__new__(Embedding013)
        return super().__new__(cls)

    __signature__ = InitSignature()  # help() and IDEs show __init__'s parameters, not __new__'s

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: ApiKey | None = None,
        dimension: int | None = None,
        batch_size: int | None = None,
        batch_window_ms: float = 2.0,
        timeout: float | None = None,
        max_concurrency: int | None = None,
        max_retries: int | None = None,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        embedder: Embedder | None = None,
        default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, str] | None = None,
        api_version: str | None = None,
        client: Any = None,
    ) -> None:
        at_least(0, batch_window_ms=batch_window_ms)
        if embedder is None:
            if model is None:
                from mini.config import load_settings

                model = load_settings().embedding_model
            options = {
                "timeout": timeout,
                "max_concurrency": max_concurrency,
                "max_retries": max_retries,
                "requests_per_minute": requests_per_minute,
                "tokens_per_minute": tokens_per_minute,
                "default_headers": default_headers,
                "default_query": default_query,
                "api_version": api_version,
                "client": client,
            }
            embedder = create_embedder(
                model,
                base_url=base_url,
                api_key=api_key,
                dimension=dimension,
                batch_size=batch_size,
                **{k: v for k, v in options.items() if v is not None},
            )
        self.embedder = embedder
        self.batch_window_ms = batch_window_ms
        self._coalescer: Coalescer[InputType, str, Any] = Coalescer(
            self._embed_coalesced, max_batch=256, max_concurrent=4, window=batch_window_ms / 1000
        )

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
        import numpy as np

        if not texts:
            return np.zeros((0, self.dimension or 0), dtype=np.float32)
        if self.batch_window_ms > 0 and len(texts) <= COALESCE_MAX_TEXTS:
            rows = await self._coalescer.submit_many(input_type, list(texts))
            return np.stack(rows)
        return await self.embedder.embed(list(texts), input_type=input_type)

    async def _embed_coalesced(self, input_type: InputType, texts: list[str]) -> list[Any]:
        """One request for many callers' texts; a rejected batch fails only the callers of the bad texts."""
        results, _requests = await embed_splitting_rejected(self.embedder, texts, input_type=input_type)
        return results

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

    # Sync twins: derived from the async originals (same signatures), run on the portal loop.
    embed = _portal.sync_twin(embed_async)
    embed_query = _portal.sync_twin(embed_query_async)
    embed_chunks = _portal.sync_twin(embed_chunks_async)
    close = _portal.sync_twin(aclose)
