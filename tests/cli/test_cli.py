"""The `mini` command end to end, as a user runs it: a real process, the sample corpus, an on-disk store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import SAMPLE_CORPUS

MINI = Path(sys.executable).with_name("mini")


def mini(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "MINI_URI"))}
    return subprocess.run([str(MINI), *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


def test_ingest_then_query_offline_prints_an_answer_with_numbered_sources(tmp_path: Path) -> None:
    ingest = mini("ingest", str(SAMPLE_CORPUS), cwd=tmp_path)
    assert ingest.returncode == 0, ingest.stderr
    assert "8 added" in ingest.stdout
    assert (tmp_path / "mini_data").is_dir()  # the default store location, relative to where it runs

    answer = mini("query", "When is glass collected for recycling?", cwd=tmp_path)
    assert answer.returncode == 0, answer.stderr
    out = answer.stdout
    assert "first Wednesday of every month [1]" in " ".join(out.split())
    assert "Sources" in out
    assert "*[1]" in out and "recycling_schedule.pdf, page 2" in out
    assert "offline, extractive" in out

    again = mini("ingest", str(SAMPLE_CORPUS), "--json", cwd=tmp_path)
    report = json.loads(again.stdout)
    assert (report["files_skipped"], report["chunks_added"]) == (8, 0)


def test_query_json_output_carries_citations_and_timings(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    assert mini("ingest", str(SAMPLE_CORPUS), "--uri", store, cwd=tmp_path).returncode == 0
    result = mini("query", "How much is the 2025 library budget?", "--uri", store, "--json", cwd=tmp_path)
    data = json.loads(result.stdout)
    assert "$1.2 million" in data["answer"]
    assert data["citations"][0]["source"].endswith("council_budget_2025.md")
    assert data["retrieved_chunks"][0]["source"].endswith("council_budget_2025.md")
    assert data["metadata"]["timings_ms"]["total"] > 0


def test_bad_input_exits_non_zero_with_a_clear_message(tmp_path: Path) -> None:
    empty = mini("query", "   ", "--uri", str(tmp_path), cwd=tmp_path)
    assert empty.returncode == 1
    assert "error: the question is empty" in empty.stderr
    assert empty.stdout == ""

    (tmp_path / "notes.xyz").write_text("hello")
    failed = mini(
        "ingest",
        str(tmp_path / "notes.xyz"),
        str(tmp_path / "missing.md"),
        "--uri",
        str(tmp_path / "s"),
        cwd=tmp_path,
    )
    assert failed.returncode == 1
    assert "notes.xyz" in failed.stderr and "unsupported file type" in failed.stderr
    assert "missing.md" in failed.stderr


def test_version_and_help(tmp_path: Path) -> None:
    assert mini("--version", cwd=tmp_path).stdout.startswith("mini-rag ")
    help_text = mini("--help", cwd=tmp_path).stdout
    assert "ingest" in help_text and "query" in help_text
