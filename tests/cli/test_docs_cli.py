"""`mini docs list | delete | stats` as a user runs them: a real process over an on-disk store filled by the real
ingestion (`mini ingest` itself, or in-process with simulated embeddings where only the store matters)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mini import VectorStore
from mini.cli.main import app
from tests.cli.terminal import mini_in_process
from tests.cli.test_cli import mini
from tests.query.conftest import make_rag
from tests.test_documents import ROWS, plant_copies, write_corpus


def count(store: Path, collection: str = "docs", **where: str) -> int:
    vectors = VectorStore(str(store), collection_name=collection)
    try:
        return vectors.count(filter=where or None)
    finally:
        vectors.close()


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def indexed(sim: Any, tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """The test corpus ingested (simulated embeddings) into `tmp_path/store`, collection "sim"."""
    files = write_corpus(tmp_path / "corpus")
    rag = make_rag(sim, tmp_path / "store")
    try:
        assert rag.index_documents([tmp_path / "corpus"]).files_added == 3
    finally:
        rag.close()
    return tmp_path / "store", files


@pytest.mark.slow
def test_ingest_list_and_delete_a_jsonl_file_by_its_relative_path(tmp_path: Path) -> None:
    write_corpus(tmp_path / "corpus")
    store = ("--uri", str(tmp_path / "store"))
    assert mini("ingest", "corpus", *store, cwd=tmp_path).returncode == 0
    jsonl = (tmp_path / "corpus" / "faq.jsonl").as_posix()

    listed = json.loads(mini_in_process("docs", "list", *store, "--json", cwd=tmp_path).stdout)
    assert [d["source"] for d in listed["documents"]].count(jsonl) == 1
    [faq] = [d for d in listed["documents"] if d["source"] == jsonl]
    assert faq["chunks"] == len(ROWS) and listed["total"] == 3
    table = mini_in_process("docs", "list", *store, cwd=tmp_path).stdout
    assert table.count("corpus/faq.jsonl") == 1 and "#" not in table  # shown relative, rows not listed
    assert "3 document(s)" in table

    before = count(tmp_path / "store")
    deleted = mini("docs", "delete", "corpus/faq.jsonl", *store, "--json", cwd=tmp_path)
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout)["deleted"] == [{"source": jsonl, "chunks": len(ROWS)}]
    assert count(tmp_path / "store") == before - len(ROWS)
    assert count(tmp_path / "store", origin=jsonl) == 0
    after = json.loads(mini_in_process("docs", "list", *store, "--json", cwd=tmp_path).stdout)
    assert jsonl not in [d["source"] for d in after["documents"]] and after["total"] == 2


def test_an_unknown_source_exits_2_with_one_line_and_deletes_nothing(
    indexed: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    store, files = indexed
    options = ("--uri", str(store), "--collection", "sim")
    before = count(store, "sim")

    result = mini("docs", "delete", files["jsonl"].as_posix(), "missing.md", *options, cwd=tmp_path)

    assert result.returncode == 2 and result.stdout == ""
    line = one_error_line(result.stderr)
    assert "'missing.md'" in line and "nothing was deleted" in line and "mini docs list" in line
    assert count(store, "sim") == before


def test_delete_prints_what_went_and_stats_count_what_is_left(
    indexed: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    store, files = indexed
    options = ("--uri", str(store), "--collection", "sim")
    stats = json.loads(mini_in_process("docs", "stats", *options, "--json", cwd=tmp_path).stdout)
    assert (stats["documents"], stats["chunks"]) == (3, count(store, "sim"))
    assert stats["by_type"] == {"jsonl": 1, "md": 1, "txt": 1}

    deleted = mini("docs", "delete", files["jsonl"].as_posix(), *options, cwd=tmp_path)
    assert deleted.returncode == 0, deleted.stderr
    assert f"({len(ROWS)} chunk(s))" in deleted.stdout and "Deleted 1 document(s)" in deleted.stdout

    shown = mini_in_process("docs", "stats", *options, cwd=tmp_path).stdout
    assert f"2 document(s), {count(store, 'sim')} chunk(s)" in shown


def test_an_empty_or_mistyped_store_is_one_clear_error(tmp_path: Path) -> None:
    options = ("--uri", str(tmp_path / "typo"))
    listed = mini("docs", "list", *options, cwd=tmp_path)
    assert listed.returncode == 2 and "mini ingest" in one_error_line(listed.stderr)
    deleted = mini("docs", "delete", "a.md", *options, cwd=tmp_path)
    assert deleted.returncode == 2 and "the store is empty" in one_error_line(deleted.stderr)
    # For programs an empty store is an answer: empty JSON, exit 0.
    as_json = mini_in_process("docs", "list", *options, "--json", cwd=tmp_path)
    assert as_json.returncode == 0 and json.loads(as_json.stdout) == {"documents": [], "total": 0}
    stats = json.loads(mini_in_process("docs", "stats", *options, "--json", cwd=tmp_path).stdout)
    assert (stats["documents"], stats["chunks"]) == (0, 0)
    assert "--uri" in mini_in_process("docs", "delete", "--help", cwd=tmp_path).stdout


def test_repair_reports_and_removes_duplicate_rows(
    indexed: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    store, files = indexed
    options = ["--uri", str(store), "--collection", "sim"]
    vectors = VectorStore(str(store), collection_name="sim")
    try:
        planted = [r.id for r in vectors.get(filter={"origin": files["md"].as_posix()})]
        asyncio.run(plant_copies(vectors, planted))
    finally:
        vectors.close()
    total = count(store, "sim")
    runner = CliRunner()

    dry = runner.invoke(app, ["docs", "repair", "--dry-run", "--json", *options], catch_exceptions=False)
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["duplicate_rows"] == len(planted) and count(store, "sim") == total

    done = runner.invoke(app, ["docs", "repair", *options], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert f"Removed {len(planted)} row(s)" in done.stdout and "notes.md" in done.stdout
    assert count(store, "sim") == total - len(planted)
    again = runner.invoke(app, ["docs", "repair", *options], catch_exceptions=False)
    assert "No duplicate rows" in again.stdout
