"""`mini eval run`: the bundled sample set offline writes the three reports; a failed row exits 1 after writing
them; a bad dataset is a clear error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mini.cli.main import app
from tests.conftest import SAMPLE_CORPUS
from tests.eval.conftest import COLLECTION, SAMPLE_SET

REPORTS = ("report.json", "report.html", "report.md")


def mini(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_the_sample_set_runs_offline_and_writes_three_reports(offline_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = mini(
        "eval", "run", str(SAMPLE_SET), "--uri", str(offline_store), "--collection", COLLECTION,
        "--out", str(out), "--llm", "none", "--concurrency", "4",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert all((out / name).is_file() for name in REPORTS)
    report = json.loads((out / "report.json").read_text())
    assert report["rows_total"] == 12 and report["rows_failed"] == 0
    assert report["summary"]["hit@5"]["n"] == 12 and "faithfulness" not in report["summary"]
    assert report["settings"]["dataset"] == "questions.jsonl" and report["settings"]["concurrency"] == 4
    html = (out / "report.html").read_text()
    assert html.startswith("<!doctype html>") and "When is glass collected for recycling?" in html
    assert "| token_f1 |" in (out / "report.md").read_text()
    for text in ("metric", "token_f1", "citation_coverage", "average per answer"):
        assert text in result.stdout


def test_json_output_and_a_metric_subset(offline_store: Path, tmp_path: Path) -> None:
    result = mini(
        "eval", "run", str(SAMPLE_SET), "--uri", str(offline_store), "--collection", COLLECTION,
        "--out", str(tmp_path / "r"), "--llm", "none", "--sequential", "--metrics", "hit,mrr", "--k", "3",
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert list(data["summary"]) == ["hit@3", "mrr@3"] and data["settings"]["concurrency"] == 1


def test_a_failed_row_exits_1_after_writing_the_reports(sim: Any, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sim")
    store, models = str(tmp_path / "store"), ("--embedding-model", "openai:sim-embed")
    assert mini("ingest", str(SAMPLE_CORPUS), "--uri", store, *models).exit_code == 0
    sim.configure(reject_text="XYZZY")
    questions = tmp_path / "qs.jsonl"
    lines = [{"question": "When is glass collected?", "ground_truth": "On the first Wednesday."}]
    lines.append({"question": "What is XYZZY?"})
    questions.write_text("\n".join(json.dumps(line) for line in lines))
    out = tmp_path / "out"
    result = mini(
        "eval", "run", str(questions), "--uri", store, *models, "--llm", "sim-chat", "--out", str(out)
    )
    assert result.exit_code == 1, result.output
    assert "failed: #2 What is XYZZY?" in " ".join(result.stderr.split())
    report = json.loads((out / "report.json").read_text())
    assert report["rows_failed"] == 1 and report["summary"]["faithfulness"] == pytest.approx(
        {"mean": 1.0, "n": 1, "failed": 1, "skipped": 0}
    )


def test_a_malformed_dataset_names_the_line(tmp_path: Path) -> None:
    questions = tmp_path / "bad.jsonl"
    questions.write_text('{"question": "ok?"}\n{"ground_truth": "no question"}\n')
    out = tmp_path / "out"
    result = mini(
        "eval", "run", str(questions), "--uri", str(tmp_path / "s"), "--llm", "none", "--out", str(out)
    )
    assert result.exit_code == 1
    assert "bad.jsonl line 2: 'question' is missing or empty" in " ".join(result.stderr.split())
    assert not out.exists()
