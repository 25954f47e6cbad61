"""Embeddings through your own `openai.AsyncOpenAI`/`AsyncAzureOpenAI`: `EmbeddingModel(model, client=...)`.

The request, batching, base64 decoding and checks are the fast path's (`OpenAIEmbedder`); the client only
carries the request, under our limiter (one per client), retry policy (SDK retries off) and typed errors
(see `mini.llms.sdk` for why).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mini._http import retry_headers
from mini._limits import RetryPolicy, limiter_for
from mini.embeddings.openai import DEFAULT_BATCH_SIZE, KNOWN_DIMENSIONS, OpenAIEmbedder
from mini.errors import ConfigurationError
from mini.llms.sdk import OPENAI_SDK, client_limiter_key, client_provider, map_sdk_errors, prepared, sdk_of


class SDKEmbedder(OpenAIEmbedder):
    """`OpenAIEmbedder` whose requests go through an OpenAI SDK client. Construction does no I/O."""

    def __init__(
        self,
        name: str,
        *,
        client: Any,
        base_url: str | None = None,
        api_key: Any = None,
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
        if sdk_of(client) != OPENAI_SDK:
            raise ConfigurationError(
                "EmbeddingModel(client=...) takes an openai.AsyncOpenAI/AsyncAzureOpenAI"
            )
        given = {"base_url": base_url, "api_key": api_key, "default_headers": default_headers}
        given |= {"default_query": default_query, "api_version": api_version}
        if any(value is not None for value in given.values()):
            raise ConfigurationError(
                f"{', '.join(k for k, v in given.items() if v is not None)}: set these on the client "
                "itself; EmbeddingModel(client=...) sends requests as the client is configured"
            )
        self.provider = client_provider(client)
        self.model = name
        self.name = f"{self.provider}:{name}"
        self._requested_dimension = dimension
        self._dimension = dimension or KNOWN_DIMENSIONS.get(name)
        self.batch_size = batch_size or DEFAULT_BATCH_SIZE
        self._client_sdk = prepared(client, timeout)
        self._limiter = limiter_for(
            client_limiter_key(client),
            max_in_flight=max_concurrency,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
        )
        self._policy = RetryPolicy(max_attempts=max_retries + 1)
        self._encoding = "base64"  # given explicitly, the SDK hands the base64 text over undecoded

    async def _post(self, payload: dict[str, Any]) -> Any:
        create = self._client_sdk.embeddings.create
        extra = {
            k: v for k, v in payload.items() if k not in ("model", "input", "encoding_format", "dimensions")
        }
        with map_sdk_errors(self._client_sdk, self.provider):
            response = await create(
                **{k: v for k, v in payload.items() if k not in extra},
                extra_body=extra or None,
                extra_headers=retry_headers(),
            )
        # Not model_dump(): with base64 the SDK leaves `embedding` a str its model types as floats.
        return {"data": [{"index": item.index, "embedding": item.embedding} for item in response.data]}

    async def aclose(self) -> None:
        """The client is the caller's: they close it."""
