"""The README's knob table is true: every settings field has a row, and each surface a row claims
(Python, environment variable, mini.toml key, CLI flag, server field) really sets that knob.

The table is parsed from the document, so a knob added to `Settings` without a row, or a row claiming a surface
that does not exist, fails here.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from pathlib import Path
from typing import Any, get_args

import pytest
import typer
from pydantic import SecretStr
from typer.testing import CliRunner

from mini._settings import Settings, env_names
from mini.config import SETTINGS_VIEWS, load_settings

DOC = Path(__file__).resolve().parents[1] / "README.md"
NONE = "—"
COLUMNS = ("knob", "python", "env", "cli", "server")
# Knobs that belong to a request, not to the settings (no environment variable, no mini.toml key).
PER_REQUEST_ONLY = {"filter"}
# Commands that build a RAG from the settings, so take every settings flag; `filter` is per question, on the
# commands that ask questions.
SETTINGS_COMMANDS = ("query", "chat", "serve", "config")
QUESTION_COMMANDS = ("query", "chat")


def knob_table() -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}
    text = DOC.read_text()
    section = text[text.index("\n## Configuration\n") : text.index("\n### Providers\n")]
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == len(COLUMNS), line
        row = dict(zip(COLUMNS, cells, strict=True))
        name = row["knob"].strip("`")
        assert name not in rows, f"{name} has two rows"
        rows[name] = row
    return rows


TABLE = knob_table()


def _absent(cell: str) -> bool:
    """A surface the knob is not on: "—" and, in parentheses, why (the issue: no empty cell without a reason)."""
    if not cell.startswith(NONE):
        return False
    assert re.fullmatch(rf"{NONE} \(\S.*\)", cell), f"say why it is not settable there: {cell!r}"
    return True


def _code(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def sample(name: str) -> Any:
    """A valid value for field `name` that differs from its default."""
    special = {"retrieval_mode": "keyword", "reranker": "cohere"}
    if name in special:
        return special[name]
    kinds = [a for a in get_args(Settings.model_fields[name].annotation) if a is not type(None)]
    kind: Any = kinds[0] if kinds else Settings.model_fields[name].annotation
    values: dict[Any, Any] = {
        str: f"sample-{name}",
        SecretStr: f"secret-{name}",
        int: 7,
        float: 0.25,
        bool: False,
    }
    return values[kind]


def _plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in Settings.model_fields:
        for variable in env_names(name):
            monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)


def test_every_settings_field_has_exactly_one_row() -> None:
    assert set(TABLE) == set(Settings.model_fields) | PER_REQUEST_ONLY


@pytest.mark.parametrize("name", sorted(TABLE))
def test_the_python_surface_exists(name: str) -> None:
    import mini
    from mini import config

    cell = TABLE[name]["python"]
    if _absent(cell):
        return
    (target,) = _code(cell)
    if match := re.fullmatch(r"(\w+)\.(\w+)", target):  # a config dataclass's field
        cls = getattr(config, match[1])
        assert match[2] in {f.name for f in dataclasses.fields(cls)}
        if name in SETTINGS_VIEWS:  # and `from_settings` fills exactly that field
            assert SETTINGS_VIEWS[name] == (cls, match[2])
    else:  # a constructor's or method's parameter
        match = re.fullmatch(r"(\w+)\((\w+)\)", target)
        assert match, cell
        owner = getattr(mini.AgenticRAG, match[1], None) or getattr(mini, match[1])
        assert match[2] in inspect.signature(owner).parameters


@pytest.mark.parametrize("name", sorted(set(Settings.model_fields)))
def test_the_environment_variable_sets_the_knob(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    variable, _toml = _code(TABLE[name]["env"])
    assert variable in env_names(name)
    value = sample(name)
    monkeypatch.setenv(variable, str(value))
    assert _plain(getattr(load_settings(), name)) == value


@pytest.mark.parametrize("name", sorted(set(Settings.model_fields)))
def test_the_mini_toml_key_sets_the_knob(name: str, tmp_path: Path) -> None:
    _variable, key = _code(TABLE[name]["env"])
    assert key == name  # one name: the toml key is the settings field
    value = sample(name)
    (tmp_path / "mini.toml").write_text(f"{key} = {json.dumps(value)}\n")
    assert _plain(getattr(load_settings(), name)) == value


def _options(command: str) -> set[str]:
    from mini.cli.main import app

    found = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    return {opt for param in found.params for opt in (*param.opts, *param.secondary_opts)}


@pytest.mark.parametrize("name", sorted(n for n in TABLE if not _absent(TABLE[n]["cli"])))
def test_the_cli_flag_exists_and_sets_the_knob(name: str) -> None:
    from mini.cli.common import FLAG_OF
    from mini.cli.main import app

    (flag,) = _code(TABLE[name]["cli"])
    flags = flag.split("/")  # --rewrite/--no-rewrite
    commands = QUESTION_COMMANDS if name in PER_REQUEST_ONLY else SETTINGS_COMMANDS
    for command in commands:
        assert set(flags) <= _options(command), f"mini {command} lacks {flag}"
    if name in PER_REQUEST_ONLY:
        return
    assert FLAG_OF[name] == flag
    # `mini config` shows the flag's value as the knob's, with source "flag".
    value = sample(name)
    args = [flags[-1]] if isinstance(value, bool) else [flags[0], str(value)]  # False: --no-rewrite
    result = CliRunner().invoke(app, ["config", "--json", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)[name]
    assert (row["value"], row["source"]) == (value, "flag")


def server_fields() -> set[str]:
    """The per-request fields EVERY answering endpoint accepts: /v1/query and /v1/query/stream (QueryRequest),
    /v1/chat/stream (ChatRequest), /v1/chat/completions (ChatCompletionRequest, as extra body fields)."""
    from mini.server.chat import ChatRequest
    from mini.server.openai_compat import ChatCompletionRequest
    from mini.server.schemas import QueryRequest

    models = (QueryRequest, ChatRequest, ChatCompletionRequest)
    return set.intersection(*(set(model.model_fields) for model in models))


@pytest.mark.parametrize("name", sorted(TABLE))
def test_the_server_column(name: str) -> None:
    cell = TABLE[name]["server"]
    if cell.startswith("server-wide"):
        assert re.fullmatch(r"server-wide: \S.*", cell), "say why it is server-wide"
        return
    (field, *_) = _code(cell)
    assert field in server_fields()


def test_no_cell_is_empty_without_a_reason() -> None:
    for name, row in TABLE.items():
        for column in COLUMNS[1:]:
            assert row[column].strip(), f"{name}: empty {column} cell"
            _absent(row[column])  # "—" must say why
