"""Environment settings (pydantic-settings), imported lazily so `import mini` stays fast.

Precedence: explicit constructor arguments > environment variables > `.env` > `mini.toml` > defaults.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MINI_", env_file=".env", extra="ignore", toml_file="mini.toml", populate_by_name=True
    )

    uri: str = "./mini_data"
    collection: str = "docs"
    # Milvus / Zilliz Cloud token ("user:password" or an API key) or Qdrant API key for the store at `uri`.
    store_token: SecretStr | None = None
    embedding_model: str = "local:all-MiniLM-L6-v2"
    # "openai:gpt-4o-mini", a bare model name, or "none"/"extractive" to force offline answers.
    llm: str | None = None
    model_path: str | None = None  # a local model directory instead of the bundled package
    cache_dir: str | None = None  # where the ONNX graph built from the bundled weights is cached
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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, dotenv_settings, TomlConfigSettingsSource(settings_cls))
