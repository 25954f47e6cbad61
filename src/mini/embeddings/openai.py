"""OpenAI-compatible embeddings: batched requests, sent concurrently under the endpoint's shared limiter."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mini._http import credential_id
from mini._limits import RetryPolicy, endpoint_key, limiter_for
from mini._openai import PROVIDER, azure_http, azure_path, openai_http, resolve_credentials
from mini._tasks import gather_all
from mini.errors import BadRequestError, DimensionMismatchError, ProviderError

if TYPE_CHECKING:
    from mini._http import ApiKey, HttpClient

# Sizes of well-known models, so the store can be created before the first call.
KNOWN_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
DEFAULT_BATCH_SIZE = 128  # OpenAI accepts up to 2048 inputs; smaller batches spread across the limiter


def decode_embedding(raw: Any) -> np.ndarray:
    """A vector from either wire encoding: base64 of little-endian float32, or a JSON list of numbers."""
    if isinstance(raw, str):
        return np.frombuffer(base64.b64decode(raw), dtype="<f4")
    return np.asarray(raw, dtype=np.float32)


class OpenAIEmbedder:
    """Embeddings from any OpenAI-compatible `/embeddings`. Construction does no I/O."""

    provider = PROVIDER
    path = "/embeddings"

    def __init__(
        self,
        name: str,
        *,
        base_url: str | None = None,
        api_key: ApiKey | None = None,
        dimension: int | None = None,
        batch_size: int | None = None,
        timeout: float = 60.0,
        max_concurrency: int | None = None,  # None: the endpoint's configured cap, else 64
        max_retries: int = 3,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, str] | None = None,
        api_version: str | None = None,
    ) -> None:
        self.model = name
        self.name = f"{self.provider}:{name}"
        self._requested_dimension = dimension
        self._dimension = dimension or KNOWN_DIMENSIONS.get(name)
        self.batch_size = batch_size or DEFAULT_BATCH_SIZE
        base_url, api_key = self._endpoint(base_url, api_key)
        self._http = self._client(base_url, api_key, timeout, default_headers, default_query, api_version)
        # The same limiter as the chat model on this endpoint and key: embeddings and chat share the quota.
        self._limiter = limiter_for(
            endpoint_key(base_url, credential_id(api_key)),
            max_in_flight=max_concurrency,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
        )
        self._policy = RetryPolicy(max_attempts=max_retries + 1)
        # base64 is ~4x smaller on the wire and decodes without building Python floats; servers that reject
        # it get "float" from then on.
        self._encoding = "base64"

    def _endpoint(self, base_url: str | None, api_key: ApiKey | None) -> tuple[str, ApiKey | None]:
        return resolve_credentials(base_url, api_key)

    def _client(
        self,
        base_url: str,
        api_key: ApiKey | None,
        timeout: float,
        default_headers: Mapping[str, str] | None,
        default_query: Mapping[str, str] | None,
        api_version: str | None,
    ) -> HttpClient:
        return openai_http(
            base_url, api_key, timeout=timeout, default_headers=default_headers, default_query=default_query
        )

    @property
    def dimension(self) -> int | None:
        return self._dimension

    async def _post(self, payload: dict[str, Any]) -> Any:
        """One request; the decoded JSON answer (`mini.embeddings.sdk` sends it through an SDK client)."""
        return await self._http.post_json(self.path, payload)

    async def _request(self, texts: list[str]) -> Any:
        payload: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": self._encoding}
        if self._requested_dimension and self.model.startswith("text-embedding-3"):
            payload["dimensions"] = self._requested_dimension
        try:
            return await self._post(payload)
        except BadRequestError:
            if self._encoding != "base64":
                raise
            self._encoding = "float"
            payload["encoding_format"] = "float"
            return await self._post(payload)

    async def _embed_batch(self, texts: list[str]) -> np.ndarray:
        tokens = sum(len(t) for t in texts) // 4 + 1
        try:
            data = await self._limiter.call(lambda: self._request(texts), policy=self._policy, tokens=tokens)
        except ProviderError as exc:
            exc.with_context(model=self.model)
            raise
        try:
            items = sorted(data["data"], key=lambda item: item["index"])
            vectors = np.stack([decode_embedding(item["embedding"]) for item in items])
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderError(
                f"malformed embeddings response: {str(data)[:200]}", provider=self.provider
            ) from exc
        if len(items) != len(texts):
            raise ProviderError(
                f"asked for {len(texts)} embeddings, got {len(items)}", provider=self.provider
            )
        return vectors.astype(np.float32, copy=False)

    async def embed(self, texts: Sequence[str], *, input_type: str = "document") -> np.ndarray:
        batches = [list(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        parts = await gather_all(self._embed_batch(batch) for batch in batches)
        vectors = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if self._dimension is None:
            self._dimension = int(vectors.shape[1])
        elif vectors.shape[1] != self._dimension:
            raise DimensionMismatchError(self._dimension, int(vectors.shape[1]), f"{self.name} response")
        # Not every compatible server normalises (Ollama, some vLLM models); cosine search assumes unit rows.
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    async def aclose(self) -> None:
        await self._http.aclose()


class AzureOpenAIEmbedder(OpenAIEmbedder):
    """Azure OpenAI embeddings by configuration: model `azure:<deployment>`, `base_url` the resource endpoint,
    `api_version`; requests go to `{base_url}/openai/deployments/{deployment}/embeddings?api-version=...`."""

    provider = "azure"

    def __init__(self, name: str, **options: Any) -> None:
        self.path = azure_path(name, "embeddings")
        super().__init__(name, **options)

    def _endpoint(self, base_url: str | None, api_key: ApiKey | None) -> tuple[str, ApiKey | None]:
        return base_url or "", api_key  # no environment fallback: azure_http names what is missing

    def _client(
        self,
        base_url: str,
        api_key: ApiKey | None,
        timeout: float,
        default_headers: Mapping[str, str] | None,
        default_query: Mapping[str, str] | None,
        api_version: str | None,
    ) -> HttpClient:
        return azure_http(
            base_url or None,
            api_key,
            api_version,
            timeout=timeout,
            default_headers=default_headers,
            default_query=default_query,
        )
