"""User-facing configuration objects (the seed's names) and access to the settings.

The config objects are plain dataclasses so constructing them costs nothing, and their field defaults are
THE defaults: `mini._settings.Settings` (environment, `.env`, `mini.toml`, CLI flags) leaves a knob None until
it is set, and `LLMConfig.from_settings(settings)` & co. are views that pass only the set values, so the
dataclass default fills in the rest. `SETTINGS_VIEWS` says which settings field feeds which config field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from typing import TYPE_CHECKING, Any

from mini._checks import at_least, positive
from mini._names import RETRIEVAL_MODES
from mini.errors import InvalidInputError

if TYPE_CHECKING:
    from mini._http import KeyProvider
    from mini._limits import RetryPolicy
    from mini._settings import Settings

OFFLINE_LLM_NAMES = frozenset({"none", "extractive", "offline", ""})


def load_settings(flags: Mapping[str, Any] | None = None) -> Settings:
    """Read settings from the environment, `.env` and `mini.toml` (fresh each call; cheap), with `flags`
    (settings field -> value, None = not given) on top. Bad input raises `InvalidInputError`."""
    from mini._settings import load

    given = {k: v for k, v in (flags or {}).items() if v is not None}
    settings = load(given)
    _check_ranges(settings, given)
    return settings


@dataclass(frozen=True, slots=True)
class LLMConfig:
    """Which chat model answers and rewrites, and how hard to push it.

    `model` is `provider:name`: `openai:gpt-4o-mini` (any OpenAI-compatible server via `base_url`: vLLM,
    Ollama, LM Studio), `anthropic:claude-...`, `bedrock:<model or inference-profile id>`; a bare name means
    the OpenAI-compatible provider. `api_key`/`base_url` default to the provider's environment variables
    (OPENAI_API_KEY/OPENAI_BASE_URL, ANTHROPIC_API_KEY/ANTHROPIC_BASE_URL; Bedrock uses the AWS credential
    chain, `region` or AWS_REGION, and `base_url` as its endpoint URL).

    Limits are per endpoint and credential, shared by every caller in the process: at most `max_concurrency`
    requests in flight (unset: 64, unless another caller of the endpoint, e.g. the embedding model on the
    same key, configured a cap) (lowered automatically while the provider answers 429, restored on success), and
    optionally `requests_per_minute`/`tokens_per_minute`. `timeout` bounds each request; `max_retries`
    retries 429/5xx/timeouts with jittered backoff, never longer than `retry_deadline` seconds in total.
    `extra_params` go into the request body as given (e.g. `{"top_p": 0.9}`); `reasoning_effort` is sent to
    reasoning models that accept it.

    `api_key` may be a callable (sync or async) returning the key, called before every request (refreshing
    tokens). `default_headers`/`default_query` go on every request (gateways). `azure:<deployment>` with
    `base_url="https://<resource>.openai.azure.com"` and `api_version` speaks Azure OpenAI (a key string as
    the `api-key` header, a callable's value as an Entra ID bearer token). `client`: your own
    `openai.AsyncOpenAI`/`AsyncAzureOpenAI` or `anthropic.AsyncAnthropic`; requests then go through it (its
    proxies, auth, instrumentation) under our limiter, retries, timeouts and errors (`mini.llms.sdk`).
    """

    model: str = "openai:gpt-4o-mini"
    base_url: str | None = None
    api_key: str | KeyProvider | None = None
    temperature: float = 0.0
    max_tokens: int | None = None
    timeout: float = 60.0
    max_retries: int = 3
    max_concurrency: int | None = None  # None: 64, unless another caller of the endpoint set a cap
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    retry_deadline: float = 120.0
    reasoning_effort: str | None = None
    region: str | None = None
    extra_params: dict[str, Any] = field(default_factory=dict)
    api_version: str | None = None
    default_headers: dict[str, str] = field(default_factory=dict)
    default_query: dict[str, str] = field(default_factory=dict)
    # A live object, not a value: left out of equality and repr (it holds credentials and connections).
    client: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        at_least(1, max_concurrency=self.max_concurrency)  # None passes: no cap of its own
        at_least(0, max_retries=self.max_retries)
        # None: no rate limit.
        positive(
            timeout=self.timeout,
            requests_per_minute=self.requests_per_minute,
            tokens_per_minute=self.tokens_per_minute,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> LLMConfig:
        """The LLM the settings select. With no `llm` set, the default model when OPENAI_API_KEY is set and
        "none" (offline, extractive answers) otherwise: what `AgenticRAG()` decides from the environment."""
        values = _set_values(cls, settings)
        if settings.llm is None:
            key = settings.openai_api_key
            if key is None or not key.get_secret_value():
                values["model"] = "none"
        return cls(**values)

    def retry_policy(self) -> RetryPolicy:
        from mini._limits import RetryPolicy

        return RetryPolicy(max_attempts=self.max_retries + 1, deadline=self.retry_deadline)


@dataclass(frozen=True, slots=True)
class RetrievalConfig:
    """How many chunks to fetch, how, and which optional stages run (the seed's names first).

    Retrieval runs legs concurrently and fuses their rankings by weighted reciprocal rank (RRF, `rrf_k`):
    a dense leg (cosine, once per query variant) and, with `use_hybrid_search`, a keyword leg (the store's
    BM25 full-text search, one query over the words of all variants); with `prefilter_field`, also the rows whose
    metadata field (a name or a list of names) is mentioned by the question, case-insensitively and as whole
    words (seed 001's alias prefilter; `mini.query.aliases`). `retrieval_mode` ("dense", "keyword", "hybrid") overrides
    `use_hybrid_search`. Each leg fetches `max(top_k, candidates_per_leg)` before fusion; the best `top_k`
    fused chunks are reranked and the best `rerank_top_k` go to the generator. Query rewriting runs only
    when an LLM is configured. The fusion defaults were chosen on BEIR SciFact's train queries and
    reported on its test queries (BENCHMARKS.md, "Retrieval quality").
    """

    top_k: int = 10
    rerank_top_k: int = 5
    use_query_rewriting: bool = True
    use_reranking: bool = True
    use_hybrid_search: bool = True
    num_query_variants: int = 2
    rrf_k: int = 10
    retrieval_mode: str | None = None
    candidates_per_leg: int = 50
    dense_weight: float = 1.0
    keyword_weight: float = 1.2
    prefilter_field: str | None = None
    prefilter_weight: float = 1.0

    def __post_init__(self) -> None:
        at_least(1, top_k=self.top_k, rerank_top_k=self.rerank_top_k)
        at_least(0, num_query_variants=self.num_query_variants)
        if self.retrieval_mode is not None and self.retrieval_mode not in RETRIEVAL_MODES:
            raise InvalidInputError(
                f"retrieval_mode must be dense, keyword or hybrid, not {self.retrieval_mode!r}"
            )
        at_least(
            0,
            rrf_k=self.rrf_k,
            candidates_per_leg=self.candidates_per_leg,
            dense_weight=self.dense_weight,
            keyword_weight=self.keyword_weight,
            prefilter_weight=self.prefilter_weight,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> RetrievalConfig:
        """The retrieval knobs set in `settings`; the others keep this class's defaults."""
        return cls(**_set_values(cls, settings))


@dataclass(frozen=True, slots=True)
class RerankerConfig:
    """Which reranker reorders the fused candidates before generation (`RetrievalConfig.use_reranking`).

    `kind`: "none" (keep the fused retrieval order; also "rrf"), "llm" (the configured chat model scores every
    candidate, `max_concurrency` at once, under the provider's limiter), "cross-encoder" (a local
    sentence-transformers model at `model_path`, run in a thread; extra `torch`), "cohere" (Cohere's rerank
    API: `model`, `api_key` or COHERE_API_KEY, `base_url`, `timeout`). Unset options take each reranker's
    default.
    """

    kind: str = "none"
    model: str | None = None
    model_path: str | None = None
    max_concurrency: int | None = None
    batch_size: int | None = None
    device: str | None = None
    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    timeout: float | None = None
    # mini-rag 0.1.3's keywords, translated by `mini.reranker` with a DeprecationWarning: `type` -> `kind`,
    # `kwargs` -> the fields above, `custom_reranker` -> kept in `custom` for `AgenticRAG(reranker=...)`.
    type: InitVar[str | None] = None
    kwargs: InitVar[Mapping[str, Any] | None] = None
    custom_reranker: InitVar[Any] = None
    custom: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self, type: str | None, kwargs: Mapping[str, Any] | None, custom_reranker: Any) -> None:
        if type is not None or kwargs or custom_reranker is not None:
            from mini.reranker import apply_legacy_keywords

            apply_legacy_keywords(self, type, kwargs, custom_reranker)

    @classmethod
    def from_settings(cls, settings: Settings) -> RerankerConfig:
        """`reranker` is the kind; `reranker_model` names the model: the Cohere model, or for a
        cross-encoder its local directory (`model_path`)."""
        values = _set_values(cls, settings)
        if values.get("kind") == "cross-encoder" and "model" in values:
            values["model_path"] = values.pop("model")
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ObservabilityConfig:
    """Tracing switches (OpenTelemetry spans are no-ops unless an SDK is configured).

    `public_key`, `secret_key`, `host`: mini-rag 0.1.3's Langfuse keywords (a DeprecationWarning): an
    `AgenticRAG` given them exports its spans to that Langfuse (`mini.tracing.configure_langfuse`, which
    LANGFUSE_PUBLIC_KEY/LANGFUSE_SECRET_KEY/LANGFUSE_HOST in the environment also switch on).
    """

    enabled: bool = True
    public_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    host: str | None = None

    def __post_init__(self) -> None:
        if self.public_key is not None or self.secret_key is not None or self.host is not None:
            from mini._deprecation import warn_renamed

            warn_renamed(
                "ObservabilityConfig(public_key=, secret_key=, host=)",
                "LANGFUSE_PUBLIC_KEY/LANGFUSE_SECRET_KEY/LANGFUSE_HOST or mini.tracing.configure_langfuse(...)",
                stacklevel=4,
            )


# Settings field -> (config class, its field): the one map behind `from_settings`, the settings' range checks
# (each value runs through its dataclass's own validation), `mini config` (defaults shown are the dataclass
# defaults) and tests/test_knobs.py.
SETTINGS_VIEWS: dict[str, tuple[type[Any], str]] = {
    "llm": (LLMConfig, "model"),
    "llm_base_url": (LLMConfig, "base_url"),
    "llm_timeout": (LLMConfig, "timeout"),
    "llm_max_retries": (LLMConfig, "max_retries"),
    "llm_retry_deadline": (LLMConfig, "retry_deadline"),
    "llm_max_concurrency": (LLMConfig, "max_concurrency"),
    "llm_requests_per_minute": (LLMConfig, "requests_per_minute"),
    "llm_tokens_per_minute": (LLMConfig, "tokens_per_minute"),
    "llm_temperature": (LLMConfig, "temperature"),
    "llm_max_tokens": (LLMConfig, "max_tokens"),
    "retrieval_mode": (RetrievalConfig, "retrieval_mode"),
    "top_k": (RetrievalConfig, "top_k"),
    "rerank_top_k": (RetrievalConfig, "rerank_top_k"),
    "use_query_rewriting": (RetrievalConfig, "use_query_rewriting"),
    "num_query_variants": (RetrievalConfig, "num_query_variants"),
    "rrf_k": (RetrievalConfig, "rrf_k"),
    "candidates_per_leg": (RetrievalConfig, "candidates_per_leg"),
    "dense_weight": (RetrievalConfig, "dense_weight"),
    "keyword_weight": (RetrievalConfig, "keyword_weight"),
    "prefilter_field": (RetrievalConfig, "prefilter_field"),
    "prefilter_weight": (RetrievalConfig, "prefilter_weight"),
    "reranker": (RerankerConfig, "kind"),
    "reranker_model": (RerankerConfig, "model"),
}


def _set_values(cls: type[Any], settings: Settings) -> dict[str, Any]:
    """The config fields of `cls` that `settings` sets (None = not set: the dataclass default applies)."""
    values: dict[str, Any] = {}
    for name, (view, target) in SETTINGS_VIEWS.items():
        value = getattr(settings, name)
        if view is cls and value is not None:
            values[target] = value
    return values


def _check_ranges(settings: Settings, flags: Mapping[str, Any]) -> None:
    """Range checks belong to the config dataclasses: run each set value through its own one, so the error
    names the settings key and its source rather than the dataclass field."""
    from mini._settings import shown, sources_of, where

    for name, (view, target) in SETTINGS_VIEWS.items():
        value = getattr(settings, name)
        if value is None:
            continue
        try:
            view(**{target: value})
        except InvalidInputError as exc:
            source = sources_of(flags).get(name, "default")
            raise InvalidInputError(
                f"invalid setting {name}={shown(name, value)} ({where(name, source)}): {exc}"
            ) from None
