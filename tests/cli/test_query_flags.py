"""`mini query` / `mini serve` answering flags, and `mini query` streaming on a real terminal.

The real `mini` command in a subprocess over a store built from the sample corpus; the terminal is a real
pseudo-terminal (os.openpty), so `sys.stdout.isatty()` is what a user's shell gives.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.cli.terminal import build_store, mini, mini_in_process, mini_tty
from tests.conftest import SAMPLE_CORPUS

QUESTION = "When is glass collected for recycling?"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_store(tmp_path_factory)


@pytest.mark.slow
def test_a_terminal_gets_the_context_then_the_streamed_answer_sources_and_timing(
    store: str, tmp_path: Path
) -> None:
    code, text, stderr = mini_tty(
        "query", QUESTION, "--uri", store, "--top-k", "2", "--show-context", cwd=tmp_path
    )
    assert code == 0, stderr
    answer = "Glass bottles and jars are collected on the first Wednesday of every month [1]."
    context, sources, timing = (
        text.index("Context\n"),
        text.index("\nSources\n"),
        text.index("answer: offline"),
    )
    assert context < text.index(answer) < sources < timing
    passages = text[context:sources]
    assert "[1] " in passages and "recycling_schedule.pdf, page 2\n" in passages
    assert "    Glass bottles and jars are collected on the first Wednesday of every month." in passages
    assert "*[1] " in text[sources:] and "[2] " in text[sources:] and "[3]" not in text[sources:]
    # Piped, the same answer comes whole, and without --show-context there are no passages.
    piped = mini("query", QUESTION, "--uri", store, "--top-k", "2", cwd=tmp_path)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.splitlines()[0] == answer and "Context" not in piped.stdout


@pytest.mark.slow
def test_tokens_reach_the_terminal_as_they_arrive_and_a_failed_stream_ends_with_one_error_line(
    store: str, tmp_path: Path, sim: Any
) -> None:
    env = {"OPENAI_BASE_URL": sim.base_url, "OPENAI_API_KEY": "sim", "MINI_LLM_MAX_RETRIES": "0"}
    args = ("query", QUESTION, "--uri", store, "--llm", "openai:sim-chat", "--no-rewrite")
    # The model's stream is cut after its first piece: only a streaming client has anything to show by then.
    sim.configure(disconnect_fraction=1)
    sim.script([{"content": "Glass goes out monthly [1]."}])
    code, text, stderr = mini_tty(*args, cwd=tmp_path, env=env)
    assert code == 1
    assert text == "Glass\n"
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: openai (sim-chat): "), stderr
    assert sim.stats()["chat"]["stream_requests"] == 1
    # Piped output asks for the whole answer (no stream to cut) and prints it at once.
    sim.script([{"content": "Glass goes out monthly [1]."}])
    piped = mini(*args, cwd=tmp_path, env=env)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.splitlines()[0] == "Glass goes out monthly [1]."
    assert sim.stats()["chat"]["stream_requests"] == 1


@pytest.mark.slow
def test_filters_parse_values_as_json_and_combine_with_and(store: str, tmp_path: Path) -> None:
    def chunks(*filters: str) -> list[dict[str, Any]]:
        args = [a for f in filters for a in ("--filter", f)]
        result = mini_in_process(
            "query",
            "library budget recycling",
            "--uri",
            store,
            "--top-k",
            "20",
            "--json",
            *args,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        return list(json.loads(result.stdout)["retrieved_chunks"])  # piped --json: whole and parseable

    # chunk_index=1 is the number 1 (a string "1" would match nothing): values are JSON when they parse.
    pdf_second = chunks("file_type=pdf", "chunk_index=1")
    assert pdf_second and all(
        (c["metadata"]["file_type"], c["metadata"]["chunk_index"]) == ("pdf", 1) for c in pdf_second
    )
    later = chunks('{"chunk_index": {"$gte": 1}}', "file_type=md")  # the JSON form and key=value, AND-ed
    assert later and all(
        c["metadata"]["chunk_index"] >= 1 and c["metadata"]["file_type"] == "md" for c in later
    )


@pytest.mark.slow
def test_a_filter_applies_to_every_question_of_a_file(store: str, tmp_path: Path) -> None:
    questions = tmp_path / "questions.txt"
    questions.write_text("library budget\nWhen is glass collected?\n", encoding="utf-8")
    result = mini(
        "query", "--file", str(questions), "--uri", store, "--json", "--filter", "file_type=md", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(answers) == 2
    for answer in answers:
        assert answer["ok"], answer
        chunks = answer["retrieved_chunks"]
        assert chunks and all(c["metadata"]["file_type"] == "md" for c in chunks)


def _retrieval(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout)["metadata"]["retrieval"])


@pytest.mark.slow
def test_mode_and_top_k_come_from_flags_over_env_over_mini_toml(store: str, tmp_path: Path) -> None:
    # Three real queries (each loads the local model): the full precedence order is unit-tested in
    # tests/test_settings.py; here each layer is shown to reach the pipeline of the real command.
    args = ("query", QUESTION, "--uri", store, "--json")
    (tmp_path / "mini.toml").write_text('retrieval_mode = "keyword"\n')
    from_toml = json.loads(mini(*args, "--top-k", "3", cwd=tmp_path).stdout)
    assert from_toml["metadata"]["retrieval"]["mode"] == "keyword" and len(from_toml["retrieved_chunks"]) == 3
    assert set(from_toml["metadata"]["retrieval"]["legs"]) == {"keyword"}
    dense = {"MINI_RETRIEVAL_MODE": "dense"}
    assert (
        _retrieval(mini_in_process(*args, cwd=tmp_path, env=dense))["mode"] == "dense"
    )  # env over mini.toml
    flagged = _retrieval(
        mini_in_process(*args, "--mode", "hybrid", cwd=tmp_path, env=dense)
    )  # the flag over both
    assert flagged["mode"] == "hybrid" and set(flagged["legs"]) == {"dense", "keyword"}


@pytest.mark.slow
def test_rewrite_flag_overrides_mini_toml(store: str, tmp_path: Path, sim: Any) -> None:
    env = {"OPENAI_BASE_URL": sim.base_url, "OPENAI_API_KEY": "sim"}
    args = ("query", QUESTION, "--uri", store, "--llm", "openai:sim-chat", "--json")
    (tmp_path / "mini.toml").write_text("use_query_rewriting = false\n")
    assert mini_in_process(*args, cwd=tmp_path, env=env).returncode == 0
    assert sim.stats()["chat"]["requests"] == 1  # the answer only
    assert mini_in_process(*args, "--rewrite", cwd=tmp_path, env=env).returncode == 0
    assert sim.stats()["chat"]["requests"] == 3  # a rewrite and an answer more


@pytest.mark.parametrize(
    ("args", "env", "toml", "message"),
    [
        (
            ["query", "q", "--mode", "fuzzy"],
            {},
            "",
            "retrieval_mode='fuzzy' (flag): must be one of dense, keyword, hybrid",
        ),
        (["query", "q", "--rerank", "magic"], {}, "", "must be one of none, llm, cross-encoder, cohere"),
        (["query", "q", "--rerank", "llm", "--llm", "none"], {}, "", "the 'llm' reranker needs a chat model"),
        (["query", "q", "--top-k", "0"], {}, "", "top_k=0 (flag): top_k must be >= 1"),
        (["query", "q", "--filter", "year"], {}, "", "--filter 'year': expected key=value or a JSON object"),
        (["query", "q", "--filter", '{"year": 2020'], {}, "", "is not valid JSON"),
        (["query", "q", "--filter", '{"year": {"$near": 1}}'], {}, "", "unknown filter operator '$near'"),
        (["query", "q"], {}, "topk = 3\n", "mini.toml: unknown key 'topk' (did you mean 'top_k'?)"),
        (["query", "q"], {"MINI_RETRIEVAL_MODE": "fuzzy"}, "", "(env MINI_RETRIEVAL_MODE): must be one of"),
        (["serve", "--mode", "fuzzy"], {}, "", "must be one of dense, keyword, hybrid"),
        (["config"], {}, 'top_k = "ten"\n', "invalid setting top_k='ten' (mini.toml)"),
        (["ingest", str(SAMPLE_CORPUS)], {}, "top_k = 0\n", "top_k=0 (mini.toml): top_k must be >= 1"),
    ],
)
def test_bad_options_fail_before_any_io_with_one_line_and_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], toml: str, message: str
) -> None:
    if toml:
        (tmp_path / "mini.toml").write_text(toml)
    result = mini(*args, "--uri", str(tmp_path / "store"), cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "store").exists()


def test_serve_builds_its_rag_from_the_same_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import uvicorn

    import mini.server
    from mini.cli.main import app

    served: list[Any] = []

    def create_app(rag: Any, **_: Any) -> str:
        served.append(rag)
        return "app"

    monkeypatch.setattr(mini.server, "create_app", create_app)
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append((app, options)))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mini.toml").write_text("keyword_weight = 2.5\nrerank_top_k = 4\n")
    monkeypatch.setenv("MINI_RRF_K", "33")
    monkeypatch.setenv("MINI_RERANK_TOP_K", "2")
    flags = [
        "--uri",
        str(tmp_path / "s"),
        "--mode",
        "keyword",
        "--top-k",
        "7",
        "--no-rewrite",
        "--llm",
        "none",
    ]
    result = CliRunner().invoke(app, ["serve", "--port", "8123", *flags], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rag, (served_app, options) = served
    assert served_app == "app" and options["port"] == 8123
    config = rag.retrieval_config
    assert (config.retrieval_mode, config.top_k, config.use_query_rewriting) == ("keyword", 7, False)
    assert (config.rrf_k, config.rerank_top_k, config.keyword_weight) == (33, 2, 2.5)  # env > mini.toml
    assert rag.llm is None and rag.vector_store.uri == str(tmp_path / "s")
