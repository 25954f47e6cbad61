"""The one settings model (pydantic-settings), imported lazily so `import mini` stays fast.

Every knob of the LLM, embeddings, store, retrieval and reranker has ONE flat name, e.g. `llm_timeout`,
`top_k`, `retrieval_mode`, `reranker`: the environment variable is `MINI_<NAME>` (provider credentials keep
their providers' own names too: OPENAI_API_KEY, ANTHROPIC_BASE_URL, AWS_REGION), the `mini.toml` key is
`<name>`; the everyday knobs also have a CLI flag (`--top-k`, `--mode` for `retrieval_mode`, `--rerank` for
`reranker`, ...). docs/configuration.md lists every knob on every surface.

Precedence, highest first: explicit arguments (the CLI's flags) > environment variables > `.env` >
`mini.toml` > defaults. The fields that shape `LLMConfig`, `RetrievalConfig` and `RerankerConfig` default to
None, meaning "not set": the dataclass default applies, so each default lives in one place (mini.config) and
`LLMConfig.from_settings(settings)` & co. build the objects.

Bad input is an `InvalidInputError` naming the key, where it came from and what is allowed: an unknown key in
`mini.toml` (a typo would otherwise do nothing, silently), a value of the wrong type, an unknown mode or
reranker, an out-of-range number. Unknown `MINI_*` environment variables (and `.env` entries) are ignored:
other tools share the prefix (the server's own settings, test suites).
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from typing import Any, get_args

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from mini._names import RERANKER_ALIASES, RETRIEVAL_MODES
from mini.errors import InvalidInputError

TOML_FILE = "mini.toml"
# Where a value came from, in precedence order (the first that has the key wins).
SOURCES = ("flag", "env", ".env", TOML_FILE, "default")


class _StrictToml(TomlConfigSettingsSource):
    """`mini.toml`, refusing keys the model does not have (and files that are not TOML)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        try:
            super().__init__(settings_cls)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInputError(f"{TOML_FILE} is not valid TOML: {exc}") from None
        known = keys_of_fields()
        for key in self.toml_data:
            if key not in known:
                names = list(Settings.model_fields)
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                # The server's own settings (MINI_API_KEYS, MINI_MAX_BODY_BYTES, ...) are the likely mix-up.
                raise InvalidInputError(
                    f"{TOML_FILE}: unknown key {key!r}{hint}; known keys: {', '.join(names)} (the server's "
                    "own settings, such as MINI_API_KEYS, go in the environment or .env, not mini.toml)"
                )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MINI_", env_file=".env", extra="ignore", toml_file=TOML_FILE, populate_by_name=True
    )

    # -- store ------------------------------------------------------------------------------------------------
    # mini-rag 0.1.3's variable names (MILVUS_URI, MILVUS_TOKEN, EMBEDDING_MODEL) are read after ours: MIGRATING.md.
    uri: str = Field(default="./mini_data", validation_alias=AliasChoices("MINI_URI", "MILVUS_URI"))
    collection: str = "docs"
    # Milvus / Zilliz Cloud token ("user:password" or an API key) or Qdrant API key for the store at `uri`.
    store_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("MINI_STORE_TOKEN", "MILVUS_TOKEN")
    )

    # -- embeddings -------------------------------------------------------------------------------------------
    # Offline by default even when OPENAI_API_KEY is set (an index's vectors must not change with a key's
    # presence); EMBEDDING_MODEL=text-embedding-3-small (0.1.3's setting) selects OpenAI's, as it did there.
    # The bundled model quantized to int8 on first use (mini.embeddings.quantize): 2-3x the float model's speed
    # at cosine >= 0.99 to it on SciFact; `local:all-MiniLM-L6-v2` is the float model.
    embedding_model: str = Field(
        default="local:all-MiniLM-L6-v2-int8",
        validation_alias=AliasChoices("MINI_EMBEDDING_MODEL", "EMBEDDING_MODEL"),
    )
    model_path: str | None = None  # a local model directory instead of the bundled package
    cache_dir: str | None = None  # where the ONNX graph built from the bundled weights is cached

    # -- LLM (LLMConfig; None = the dataclass default) --------------------------------------------------------
    # "openai:gpt-4o-mini", a bare model name, or "none"/"extractive" to force offline answers. Unset: the
    # default model when OPENAI_API_KEY is set, offline otherwise.
    llm: str | None = None
    llm_base_url: str | None = None  # any provider's endpoint; unset: OPENAI_BASE_URL & co.
    llm_timeout: float | None = None
    llm_max_retries: int | None = None
    llm_retry_deadline: float | None = None
    llm_max_concurrency: int | None = None
    llm_requests_per_minute: float | None = None
    llm_tokens_per_minute: float | None = None
    llm_temperature: float | None = None
    llm_max_tokens: int | None = None

    # -- retrieval (RetrievalConfig; None = the dataclass default) --------------------------------------------
    retrieval_mode: str | None = None  # dense | keyword | hybrid
    top_k: int | None = None
    rerank_top_k: int | None = None
    use_query_rewriting: bool | None = None
    num_query_variants: int | None = None
    rrf_k: int | None = None
    candidates_per_leg: int | None = None
    dense_weight: float | None = None
    keyword_weight: float | None = None
    prefilter_field: str | None = None
    prefilter_weight: float | None = None

    # -- reranker (RerankerConfig; None = the dataclass default) ----------------------------------------------
    reranker: str | None = None  # none | llm | cross-encoder | cohere
    # cohere: the model name; cross-encoder: the local model directory (RerankerConfig.model_path).
    reranker_model: str | None = None

    # -- shared state of several servers -------------------------------------------------------------------
    # redis://[:password@]host:port/db (MINI_REDIS_URL): `mini serve` replicas keep their sessions, ingestion jobs
    # and the provider limiter there, so any replica serves any request. Unset: all of it in the process.
    redis_url: str | None = None

    # -- provider credentials and endpoints (their providers' own variable names) ---------------------------
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "MINI_OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "MINI_OPENAI_BASE_URL")
    )
    anthropic_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ANTHROPIC_API_KEY", "MINI_ANTHROPIC_API_KEY")
    )
    anthropic_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("ANTHROPIC_BASE_URL", "MINI_ANTHROPIC_BASE_URL")
    )
    aws_region: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION", "MINI_AWS_REGION")
    )

    @field_validator("retrieval_mode")
    @classmethod
    def _known_mode(cls, value: str | None) -> str | None:
        if value is None:
            return None
        mode = value.strip().lower()
        if mode not in RETRIEVAL_MODES:
            raise ValueError(f"must be one of {', '.join(RETRIEVAL_MODES)}")
        return mode

    @field_validator("reranker")
    @classmethod
    def _known_reranker(cls, value: str | None) -> str | None:
        # The one table of spellings (mini._names, also the factory's); stored canonical ("cross_encoder" ->
        # "cross-encoder") so views and `mini config` show one spelling.
        if value is None:
            return None
        kind = RERANKER_ALIASES.get(value.strip().lower())
        if kind is None:
            raise ValueError(f"must be one of {', '.join(dict.fromkeys(RERANKER_ALIASES.values()))}")
        return kind

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, dotenv_settings, _StrictToml(settings_cls))


SECRET_FIELDS = frozenset(n for n, i in Settings.model_fields.items() if SecretStr in get_args(i.annotation))
# Fields with several variable names (OPENAI_API_KEY or MINI_OPENAI_API_KEY): errors say "env" without guessing.
_ALIASED = frozenset(n for n, i in Settings.model_fields.items() if i.validation_alias is not None)


def keys_of_fields() -> dict[str, str]:
    """Every key a source may report a field under (its name and its aliases) -> the field's name."""
    keys: dict[str, str] = {}
    for name, info in Settings.model_fields.items():
        keys[name] = name
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            keys.update({str(choice): name for choice in alias.choices})
    return keys


def env_names(name: str) -> list[str]:
    """The environment variables that set field `name`, preferred first."""
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [f"MINI_{name.upper()}"]


def sources_of(flags: Mapping[str, Any]) -> dict[str, str]:
    """For every field, where its value comes from: one of `SOURCES` (e.g. "env MINI_TOP_K" is reported as
    "env"). Reads each source on its own, as `Settings()` does, in the same precedence order."""
    keys = keys_of_fields()
    layers: list[tuple[str, Mapping[str, Any]]] = [
        ("flag", {k: v for k, v in flags.items() if v is not None}),
        ("env", EnvSettingsSource(Settings)()),
        (".env", DotEnvSettingsSource(Settings)()),
        (TOML_FILE, _StrictToml(Settings)()),
    ]
    found: dict[str, str] = {}
    for label, data in layers:
        for key in data:
            name = keys.get(key)
            if name is not None and name not in found:
                found[name] = label
    return {name: found.get(name, "default") for name in Settings.model_fields}


def load(flags: Mapping[str, Any] | None = None) -> Settings:
    """The settings with `flags` (field name -> value; None = not given) on top; `InvalidInputError` with a
    one-line message for bad input."""
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    unknown = sorted(set(given) - set(Settings.model_fields))
    if unknown:  # a caller's typo, not a user's: fail loudly rather than ignore the flag
        raise TypeError(f"not settings fields: {', '.join(unknown)}")
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        raise InvalidInputError(_describe(exc, given)) from None
    return settings


def where(name: str, source: str) -> str:
    if source in ("env", ".env") and name not in _ALIASED:
        return f"{source} {env_names(name)[0]}"
    return source


def shown(name: str, value: Any) -> str:
    return "'***'" if name in SECRET_FIELDS else repr(value)


def _describe(exc: ValidationError, flags: Mapping[str, Any]) -> str:
    """The first error as one line: key, value, where it came from, what is wrong or allowed."""
    error = exc.errors(include_url=False)[0]
    key = str(error["loc"][0]) if error["loc"] else ""
    name = keys_of_fields().get(key, key)
    try:
        source = sources_of(flags).get(name, "default")
    except InvalidInputError:
        source = "?"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"invalid setting {name}={shown(name, error.get('input'))} ({where(name, source)}): {message}"
