"""The sync twins work anywhere: a plain script, inside a running loop (the Jupyter case), twice in a row,
and interleaved with the async API on successive event loops, with no leaked clients or warnings."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, SAMPLE_CORPUS

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, warnings
    warnings.simplefilter("default")  # show ResourceWarnings (unclosed sockets/sessions) if there are any
    from mini import AgenticRAG, EmbeddingModel, LLMConfig, VectorStore

    store_dir, corpus, base_url = sys.argv[1], sys.argv[2], sys.argv[3]
    if base_url == "offline":
        rag = AgenticRAG(VectorStore(store_dir, collection_name="t"), EmbeddingModel())
    else:
        rag = AgenticRAG(
            VectorStore(store_dir, collection_name="t"),
            EmbeddingModel("openai:e", base_url=base_url, api_key="k", dimension=384),
            llm_config=LLMConfig(model="chat", base_url=base_url, api_key="k"),
        )
    question = "How much is the 2025 library budget?"
    report = rag.index_documents([corpus])
    answers = [rag.query(question).answer, rag.query(question).answer]  # plain script, twice in a row

    async def sync_inside_a_running_loop():
        return rag.query(question).answer  # what a notebook cell does

    async def async_api():
        return (await rag.query_async(question)).answer

    answers.append(asyncio.run(sync_inside_a_running_loop()))
    answers.append(asyncio.run(async_api()))  # the async API on a new loop...
    answers.append(asyncio.run(async_api()))  # ...and on another one
    answers.append(rag.query(question).answer)  # back to the sync twin
    answers.append("".join(e.data for e in rag.stream(question) if e.type == "token"))
    print(report.files_added, len(set(answers)), answers[0])
    """
)


def run_script(tmp_path: Path, base_url: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path / "store"), str(SAMPLE_CORPUS), base_url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


@pytest.mark.slow
def test_sync_and_async_api_work_everywhere_offline(tmp_path: Path) -> None:
    result = run_script(tmp_path, "offline")
    assert result.returncode == 0, result.stderr
    added, distinct, answer = result.stdout.strip().split(" ", 2)
    assert (added, distinct) == ("8", "1")  # seven ways of asking, one answer
    assert "$1.2 million" in answer
    assert "Warning" not in result.stderr and "Unclosed" not in result.stderr, result.stderr


def test_http_clients_survive_loop_changes_and_close_cleanly(tmp_path: Path, sim: Any) -> None:
    result = run_script(tmp_path, sim.base_url)
    assert result.returncode == 0, result.stderr
    added, distinct, answer = result.stdout.strip().split(" ", 2)
    assert (added, distinct) == ("8", "1")
    assert answer.endswith("[2]")
    # Sessions of every loop (the portal's and each asyncio.run's) were closed: no aiohttp/socket warnings.
    assert "Unclosed" not in result.stderr and "ResourceWarning" not in result.stderr, result.stderr
