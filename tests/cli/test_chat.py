"""`mini chat`: a conversation over the store in the terminal (the real command; a pseudo-terminal for the
interactive session, piped input for scripted ones)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli.terminal import Terminal, build_store, mini

GLASS = "When is glass collected for recycling?"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_store(tmp_path_factory)


def chat(store: str, lines: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> Any:
    return mini("chat", "--uri", store, *args, cwd=cwd, env=env, stdin=lines)


@pytest.mark.slow
def test_a_terminal_session_streams_answers_and_ctrl_d_ends_it(store: str, tmp_path: Path) -> None:
    terminal = Terminal("chat", "--uri", store, "--top-k", "2", cwd=tmp_path)
    try:
        terminal.expect("> ")
        terminal.send(f"{GLASS}\n".encode())
        terminal.expect("> ", 2)  # the answer is complete
        terminal.send(b"/sources\n")
        terminal.expect("> ", 3)
        terminal.send(b"\x04")  # Ctrl-D
        code, text, stderr = terminal.finish()
    finally:
        terminal.kill()
    assert code == 0, stderr
    assert "Ctrl-D exits" in text and "> " in text
    answer = text.index("Glass bottles and jars are collected on the first Wednesday of every month [1].\n")
    sources = text.index("\nSources\n", answer)
    context = text.index("Context\n", sources)  # /sources: the last answer's passages
    assert "answer: offline, extractive" in text[sources:context]
    assert "    Glass bottles and jars are collected on the first Wednesday" in text[context:]
    assert stderr == ""


@pytest.mark.slow
def test_follow_ups_use_the_history_until_reset(store: str, tmp_path: Path, sim: Any) -> None:
    env = {"OPENAI_BASE_URL": sim.base_url, "OPENAI_API_KEY": "sim"}
    sim.script(
        [
            {"content": "Glass goes out on the first Wednesday [1]."},
            {
                "content": "When is paper collected for recycling?"
            },  # the follow-up, condensed with the history
            {"content": "Paper goes every other Thursday [1]."},
            {"content": "Which paper do you mean? [1]"},  # after /reset: no history, nothing to condense
        ]
    )
    # A real pseudo-terminal: each line is typed at its prompt, as a user would.
    terminal = Terminal(
        "chat", "--uri", store, "--llm", "openai:sim-chat", "--no-rewrite", cwd=tmp_path, env=env
    )
    try:
        for prompt, line in enumerate((GLASS, "And the paper?", "/reset", "And the paper?"), start=1):
            terminal.expect("> ", prompt)
            terminal.send(f"{line}\n".encode())
        terminal.expect("> ", 5)
        terminal.send(b"\x04")  # Ctrl-D
        code, out, stderr = terminal.finish()
    finally:
        terminal.kill()
    assert code == 0, stderr
    first, second = out.index("first Wednesday [1]."), out.index("every other Thursday [1].")
    reset, third = out.index("The conversation is forgotten"), out.index("Which paper do you mean? [1]")
    assert first < second < reset < third
    assert out.count("searched as: ") == 1 and "searched as: When is paper collected for recycling?" in out
    assert out.count("\nSources\n") == 3
    stats = sim.stats()["chat"]
    assert (stats["requests"], stats["stream_requests"]) == (4, 3)  # three answers and one condensing


@pytest.mark.slow
def test_a_failed_turn_prints_one_error_line_and_the_chat_goes_on(
    store: str, tmp_path: Path, sim: Any
) -> None:
    env = {"OPENAI_BASE_URL": sim.base_url, "OPENAI_API_KEY": "sim"}
    lines = f"{GLASS}\n/bogus\nAnd the paper?\n"
    result = chat(store, lines, "--llm", "openai:missing-model", "--no-rewrite", cwd=tmp_path, env=env)
    assert result.returncode == 0
    errors = result.stderr.splitlines()
    assert len(errors) == 2 and all(e.startswith("error: openai (missing-model): HTTP 404") for e in errors)
    assert "Unknown command /bogus." in result.stdout
    assert sim.stats()["chat"]["requests"] == 2  # both questions were asked


def test_bad_options_end_the_chat_before_it_starts(tmp_path: Path) -> None:
    result = chat(str(tmp_path / "store"), "", "--filter", "oops", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: --filter 'oops'") and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "store").exists()
