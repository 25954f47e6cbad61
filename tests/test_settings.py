"""The one settings model: sources and their precedence, the config objects as views of it, bad input refused
with messages that name the key, its source and what is allowed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mini._settings import Settings, sources_of
from mini.config import SETTINGS_VIEWS, LLMConfig, RerankerConfig, RetrievalConfig, load_settings
from mini.errors import InvalidInputError


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No developer's MINI_* knobs, and a working directory of our own (mini.toml and .env are read from it)."""
    from mini._settings import env_names

    for name in Settings.model_fields:
        if name not in ("uri", "cache_dir"):  # set by the suite's conftest, for every test
            for variable in env_names(name):
                monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)


def test_unset_knobs_are_none_so_the_dataclass_defaults_apply() -> None:
    # The defaults live once, on the dataclasses: no settings field that feeds one has a default of its own.
    for name in SETTINGS_VIEWS:
        assert Settings.model_fields[name].default is None, name
    settings = load_settings()
    assert RetrievalConfig.from_settings(settings) == RetrievalConfig()
    assert RerankerConfig.from_settings(settings) == RerankerConfig()
    # No MINI_LLM and no OPENAI_API_KEY: offline, as AgenticRAG() decides; otherwise the default model.
    assert LLMConfig.from_settings(settings) == LLMConfig(model="none")


def test_an_openai_key_alone_selects_the_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert LLMConfig.from_settings(load_settings()).model == LLMConfig().model


def test_every_llm_and_retrieval_knob_reaches_its_config_object(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "MINI_LLM": "anthropic:claude-x",
        "MINI_LLM_BASE_URL": "http://localhost:9/v1",
        "MINI_LLM_TIMEOUT": "12.5",
        "MINI_LLM_MAX_RETRIES": "0",
        "MINI_LLM_RETRY_DEADLINE": "7",
        "MINI_LLM_MAX_CONCURRENCY": "3",
        "MINI_LLM_REQUESTS_PER_MINUTE": "60",
        "MINI_LLM_TOKENS_PER_MINUTE": "9000",
        "MINI_LLM_TEMPERATURE": "0.7",
        "MINI_LLM_MAX_TOKENS": "256",
        "MINI_RETRIEVAL_MODE": "Keyword",
        "MINI_TOP_K": "4",
        "MINI_RERANK_TOP_K": "2",
        "MINI_USE_QUERY_REWRITING": "false",
        "MINI_NUM_QUERY_VARIANTS": "0",
        "MINI_RRF_K": "60",
        "MINI_CANDIDATES_PER_LEG": "5",
        "MINI_DENSE_WEIGHT": "0.5",
        "MINI_KEYWORD_WEIGHT": "2",
        "MINI_PREFILTER_FIELD": "title",
        "MINI_PREFILTER_WEIGHT": "3",
        "MINI_RERANKER": "cohere",
        "MINI_RERANKER_MODEL": "rerank-v3.5",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert LLMConfig.from_settings(settings) == LLMConfig(
        model="anthropic:claude-x",
        base_url="http://localhost:9/v1",
        timeout=12.5,
        max_retries=0,
        retry_deadline=7.0,
        max_concurrency=3,
        requests_per_minute=60.0,
        tokens_per_minute=9000.0,
        temperature=0.7,
        max_tokens=256,
    )
    assert RetrievalConfig.from_settings(settings) == RetrievalConfig(
        retrieval_mode="keyword",  # normalised
        top_k=4,
        rerank_top_k=2,
        use_query_rewriting=False,
        num_query_variants=0,
        rrf_k=60,
        candidates_per_leg=5,
        dense_weight=0.5,
        keyword_weight=2.0,
        prefilter_field="title",
        prefilter_weight=3.0,
    )
    assert RerankerConfig.from_settings(settings) == RerankerConfig(kind="cohere", model="rerank-v3.5")


def test_a_cross_encoder_reranker_model_is_its_local_directory() -> None:
    settings = load_settings({"reranker": "cross_encoder", "reranker_model": "/models/ce"})
    assert RerankerConfig.from_settings(settings) == RerankerConfig(
        kind="cross-encoder", model_path="/models/ce"
    )


def test_the_views_map_onto_real_dataclass_fields() -> None:
    for name, (view, field) in SETTINGS_VIEWS.items():
        assert field in {f.name for f in dataclasses.fields(view)}, name


def test_precedence_flag_over_env_over_dotenv_over_toml_over_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "mini.toml").write_text('top_k = 1\nrerank_top_k = 1\nrrf_k = 1\ncollection = "toml"\n')
    (tmp_path / ".env").write_text("MINI_TOP_K=2\nMINI_RERANK_TOP_K=2\nMINI_RRF_K=2\n")
    monkeypatch.setenv("MINI_TOP_K", "3")
    monkeypatch.setenv("MINI_RERANK_TOP_K", "3")
    flags = {"top_k": 4, "llm": None}  # None: the flag was not given
    settings = load_settings(flags)
    assert (settings.top_k, settings.rerank_top_k, settings.rrf_k, settings.collection) == (4, 3, 2, "toml")
    sources = sources_of(flags)
    assert sources["top_k"] == "flag"
    assert sources["rerank_top_k"] == "env"
    assert sources["rrf_k"] == ".env"
    assert sources["collection"] == "mini.toml"
    assert sources["llm"] == sources["dense_weight"] == "default"


def test_existing_variable_names_keep_working(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINI_URI", "/data/store")
    monkeypatch.setenv("MINI_COLLECTION", "papers")
    monkeypatch.setenv("MINI_LLM", "openai:gpt-x")
    monkeypatch.setenv("MINI_EMBEDDING_MODEL", "openai:text-embedding-3-small")
    monkeypatch.setenv("MINI_OPENAI_API_KEY", "sk-mini")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    settings = load_settings()
    assert (settings.uri, settings.collection, settings.llm) == ("/data/store", "papers", "openai:gpt-x")
    assert settings.embedding_model == "openai:text-embedding-3-small"
    assert settings.openai_api_key is not None and settings.openai_api_key.get_secret_value() == "sk-mini"
    assert settings.aws_region == "eu-west-1"


def test_unknown_mini_environment_variables_are_ignored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MINI_API_KEYS", "k1")  # the server's own setting
    monkeypatch.setenv("MINI_SOMETHING_ELSE", "x")
    (tmp_path / ".env").write_text("MINI_OTHER_TOOL=1\n")
    assert load_settings().top_k is None


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("topk = 3\n", "mini.toml: unknown key 'topk' (did you mean 'top_k'?); known keys: uri, collection"),
        ("api_keys = 'k'\n", "unknown key 'api_keys'"),
        ("[llm]\ntimeout = 3\n", "invalid setting llm="),
        ('top_k = "ten"\n', "invalid setting top_k='ten' (mini.toml): Input should be a valid integer"),
        (
            'retrieval_mode = "fuzzy"\n',
            "retrieval_mode='fuzzy' (mini.toml): must be one of dense, keyword, hybrid",
        ),
        (
            'reranker = "magic"\n',
            "reranker='magic' (mini.toml): must be one of none, llm, cross-encoder, cohere",
        ),
        ("llm_timeout = 0\n", "invalid setting llm_timeout=0.0 (mini.toml): timeout must be > 0"),
        ("top_k = [\n", "mini.toml is not valid TOML"),
    ],
)
def test_bad_mini_toml_is_refused_naming_the_key(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "mini.toml").write_text(toml)
    with pytest.raises(InvalidInputError) as raised:
        load_settings()
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)  # the CLI prints it as one line


def test_bad_environment_and_flags_name_their_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINI_TOP_K", "0")
    with pytest.raises(InvalidInputError, match=r"top_k=0 \(env MINI_TOP_K\): top_k must be >= 1"):
        load_settings()
    with pytest.raises(InvalidInputError, match=r"retrieval_mode='x' \(flag\): must be one of dense"):
        load_settings({"retrieval_mode": "x", "top_k": 3})
    monkeypatch.setenv("MINI_LLM_MAX_CONCURRENCY", "lots")
    with pytest.raises(
        InvalidInputError, match=r"llm_max_concurrency='lots' \(env MINI_LLM_MAX_CONCURRENCY\)"
    ):
        load_settings({"top_k": 3})


def test_secret_values_never_appear_in_errors(tmp_path: Path) -> None:
    (tmp_path / "mini.toml").write_text("openai_api_key = 12345678\n")
    with pytest.raises(InvalidInputError) as raised:
        load_settings()
    assert "openai_api_key='***'" in str(raised.value) and "12345678" not in str(raised.value)


def test_a_flag_that_is_not_a_setting_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="not settings fields: topk"):
        load_settings({"topk": 3})
