"""`mini config`: every knob's effective value and where it came from, secrets masked (the real command)."""

from __future__ import annotations

import json
from pathlib import Path

from mini.config import LLMConfig, RetrievalConfig
from tests.cli.terminal import mini

SECRET = "sk-do-not-print-me"


def _setup(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "mini.toml").write_text('top_k = 3\nrrf_k = 30\nreranker = "cross_encoder"\n')
    (tmp_path / ".env").write_text(
        "MINI_COLLECTION=from_dotenv\nMINI_RRF_K=20\nMINI_RERANKER_MODEL=/models/ce\n"
    )
    return {"MINI_RERANK_TOP_K": "4", "MINI_RRF_K": "10", "OPENAI_API_KEY": SECRET}


def test_config_json_gives_each_value_and_its_source(tmp_path: Path) -> None:
    env = _setup(tmp_path)
    result = mini("config", "--json", "--mode", "keyword", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout
    table = json.loads(result.stdout)
    shown = {name: (row["value"], row["source"]) for name, row in table.items()}
    assert shown["retrieval_mode"] == ("keyword", "flag")
    assert shown["rerank_top_k"] == (4, "env")
    assert shown["rrf_k"] == (10, "env")  # env > .env > mini.toml
    assert shown["collection"] == ("from_dotenv", ".env")
    assert shown["top_k"] == (3, "mini.toml")
    assert shown["reranker"] == ("cross-encoder", "mini.toml")  # canonical spelling
    assert shown["reranker_model"] == ("/models/ce", ".env")
    assert shown["openai_api_key"] == ("****", "env")
    # Unset knobs show what will run: the config objects' defaults (the key alone selects the default model).
    assert shown["llm"] == (LLMConfig().model, "default")
    assert shown["llm_timeout"] == (LLMConfig().timeout, "default")
    assert shown["keyword_weight"] == (RetrievalConfig().keyword_weight, "default")
    assert shown["llm_max_tokens"] == (None, "default")
    assert table["top_k"]["env"] == "MINI_TOP_K" and table["openai_api_key"]["env"] == "OPENAI_API_KEY"


def test_config_text_is_one_line_per_knob(tmp_path: Path) -> None:
    env = _setup(tmp_path)
    result = mini("config", "--top-k", "8", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}
    assert rows["top_k"] == ["8", "flag"]
    assert rows["rrf_k"] == ["10", "env", "MINI_RRF_K"]
    assert rows["openai_api_key"] == ["****", "env", "OPENAI_API_KEY"]
    assert rows["llm_max_tokens"] == ["unset", "default"]


def test_config_without_a_key_says_answers_are_offline(tmp_path: Path) -> None:
    table = json.loads(mini("config", "--json", cwd=tmp_path).stdout)
    assert table["llm"]["value"] == "none" and "offline" in table["llm"]["note"]
    assert table["uri"] == {"value": "./mini_data", "source": "default", "env": "MINI_URI"}
