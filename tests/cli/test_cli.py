"""The `mini` command end to end, as a user runs it: a real process, the sample corpus, an on-disk store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli.terminal import mini_in_process
from tests.conftest import SAMPLE_CORPUS

MINI = Path(sys.executable).with_name("mini")


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample corpus ingested once by `mini ingest` (the local model: seconds); tests query a copy."""
    where = tmp_path_factory.mktemp("sample")
    ingest = mini("ingest", str(SAMPLE_CORPUS), "--uri", str(where / "mini_data"), cwd=where)
    assert ingest.returncode == 0, ingest.stderr
    return where / "mini_data"


def mini(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "MINI_URI"))}
    return subprocess.run([str(MINI), *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


@pytest.mark.slow
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

    again = mini_in_process("ingest", str(SAMPLE_CORPUS), "--json", cwd=tmp_path)
    report = json.loads(again.stdout)
    assert (report["files_skipped"], report["chunks_added"]) == (8, 0)


@pytest.mark.slow
def test_query_json_output_carries_citations_and_timings(tmp_path: Path, sample_store: Path) -> None:
    store = str(shutil.copytree(sample_store, tmp_path / "store"))
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


@pytest.mark.slow
def test_ingest_flags_json_report_and_prune(tmp_path: Path) -> None:
    from mini.testing.corpus import write_corpus

    docs = tmp_path / "docs"
    write_corpus(docs, 12)
    args = ("--uri", str(tmp_path / "store"), "--json", "--batch-size", "8", "--concurrency", "2")
    first = json.loads(mini("ingest", str(docs), *args, cwd=tmp_path).stdout)
    assert first["files_added"] == 12 and first["embedding_requests"] >= 1
    assert first["chunks_embedded"] == first["chunks_added"] > 0
    (docs / "doc00003.txt").unlink()
    pruned = json.loads(mini_in_process("ingest", str(docs), *args, "--prune", cwd=tmp_path).stdout)
    assert (pruned["files_skipped"], pruned["files_pruned"], pruned["chunks_embedded"]) == (11, 1, 0)


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_reports_progress_and_a_rerun_resumes(tmp_path: Path, sim: Any) -> None:
    from mini.testing.corpus import write_corpus

    docs = tmp_path / "docs"
    write_corpus(docs, 80)
    sim.configure(embed_ms=40)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "MINI_URI"))}
    env.update(OPENAI_BASE_URL=sim.base_url, OPENAI_API_KEY="sim")
    command = [str(MINI), "ingest", str(docs), "--uri", str(tmp_path / "store")]
    command += ["--embedding-model", "openai:sim-embed", "--batch-size", "4", "--concurrency", "1"]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell that starts a job in the background (`make test &`, CI runners) hands it SIGINT ignored, and
        # an ignored signal stays ignored across exec: give the CLI the terminal's default, as a user's has.
        preexec_fn=_default_sigint,
    )
    deadline = time.monotonic() + 60
    while sim.stats()["embeddings"]["inputs_embedded"] < 30:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "resume" in stderr
    assert "Traceback" not in stderr
    done = int(stdout.split(" added")[0].rsplit(" ", 1)[-1])  # "Indexed N file(s) in Xs: K added, ..."
    assert 0 < done < 80
    sim.configure(embed_ms=0)
    rerun = subprocess.run(
        [*command, "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    report = json.loads(rerun.stdout)
    assert (report["files_skipped"], report["files_added"]) == (done, 80 - done)


@pytest.mark.slow
def test_query_file_answers_in_input_order_and_reports_the_one_failing_question(
    sim: Any, tmp_path: Path
) -> None:
    env = {"OPENAI_API_KEY": "sim", "OPENAI_BASE_URL": sim.base_url}
    sim_options = ["--embedding-model", "openai:sim-embed"]
    ingest = mini_env(env, "ingest", str(SAMPLE_CORPUS), *sim_options, cwd=tmp_path)
    assert ingest.returncode == 0, ingest.stderr
    questions = [f"When is glass collected for recycling? (variant {i})" for i in range(10)]
    questions[3] = "Is POISON allowed in the compost bin?"  # the simulated embeddings model rejects it (400)
    (tmp_path / "questions.txt").write_text("\n".join(questions) + "\n")
    # Random slow replies make completion order differ from input order.
    sim.configure(reject_text="POISON", chat_ms=30, slow_fraction=0.3, slow_ms=300)
    batch = mini_env(
        env,
        "query",
        "--file",
        "questions.txt",
        "--concurrency",
        "3",
        "--llm",
        "openai:sim-chat",
        *sim_options,
        "--json",
        "--jsonl",
        "answers.jsonl",
        cwd=tmp_path,
    )
    assert batch.returncode == 1, batch.stderr  # one question failed
    lines = [json.loads(line) for line in batch.stdout.splitlines()]
    assert [item["index"] for item in lines] == list(range(10))
    assert [item["question"] for item in lines] == questions
    assert [item["ok"] for item in lines] == [i != 3 for i in range(10)]
    assert lines[3]["error"]["type"] == "BadRequestError" and "POISON" in lines[3]["error"]["message"]
    assert all(item["answer"] for item in lines if item["ok"])
    written = (tmp_path / "answers.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in written] == list(range(10))
    assert "9 answered, 1 failed" in batch.stderr
    assert sim.stats()["chat"]["peak_in_flight"] <= 3


@pytest.mark.slow
def test_query_needs_a_question_or_a_file_and_profile_prints_the_stage_table(
    tmp_path: Path, sample_store: Path
) -> None:
    neither = mini("query", cwd=tmp_path)
    assert neither.returncode == 2 and "give a question or --file" in neither.stderr
    shutil.copytree(sample_store, tmp_path / "mini_data")  # the default store, where `mini` runs
    profiled = mini_in_process("query", "When is glass collected for recycling?", "--profile", cwd=tmp_path)
    assert profiled.returncode == 0, profiled.stderr
    for stage in ("rewrite", "embed", "search", "rerank", "generate", "total", "waiting on I/O"):
        assert stage in profiled.stderr
    missing = mini("query", "--file", "nope.txt", cwd=tmp_path)
    assert missing.returncode == 2 and "cannot read questions" in missing.stderr


def mini_env(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "MINI_URI"))} | env
    return subprocess.run([str(MINI), *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=full)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# -- mini serve: where a server without keys may listen (in process, uvicorn.run replaced) ------------------------


def serve_command(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[Any, list[dict[str, Any]]]:
    """`mini serve ARGS` through typer's runner; uvicorn.run records its options instead of serving."""
    import uvicorn
    from typer.testing import CliRunner

    from mini.cli.main import app

    served: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda server_app, **options: served.append(options))
    result = CliRunner().invoke(app, ["serve", "--llm", "none", *args], catch_exceptions=False)
    return result, served


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "myhost.lan"])
def test_serve_without_api_keys_refuses_a_host_other_machines_reach(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    result, served = serve_command(monkeypatch, "--host", host)
    assert result.exit_code == 2 and not served
    [line] = result.stderr.splitlines()
    assert (
        line.startswith(f"error: --host {host} ") and "MINI_API_KEYS" in line and "--insecure-no-auth" in line
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_serve_without_api_keys_binds_to_loopback(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    result, served = serve_command(monkeypatch, "--host", host)
    assert result.exit_code == 0, result.output
    assert served[0]["host"] == host and "warning" not in result.stderr


def test_serve_binds_publicly_with_api_keys_or_with_a_loud_insecure_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    insecure, served = serve_command(monkeypatch, "--host", "0.0.0.0", "--insecure-no-auth")
    assert insecure.exit_code == 0, insecure.output
    assert served[0]["host"] == "0.0.0.0"
    [warning] = insecure.stderr.splitlines()
    assert warning.startswith("warning: serving 0.0.0.0 WITHOUT AUTHENTICATION")
    monkeypatch.setenv("MINI_API_KEYS", "k1")
    keyed, served = serve_command(monkeypatch, "--host", "0.0.0.0")
    assert keyed.exit_code == 0 and served[0]["host"] == "0.0.0.0" and keyed.stderr == ""


def test_serve_names_a_malformed_server_setting_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINI_MAX_BODY_BYTES", "lots")
    result, served = serve_command(monkeypatch)
    assert result.exit_code == 2 and not served
    [line] = result.stderr.splitlines()
    assert line.startswith("error: MINI_MAX_BODY_BYTES: ") and "'lots'" in line
