"""`mini mcp` driven by the official MCP SDK's own client: over streamable HTTP (the server on 127.0.0.1 in
this process) and over stdio (`python -m mini.cli.main mcp` as a subprocess, as an MCP client starts it)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from mini import AgenticRAG
from mini.integrations.mcp import create_server
from mini.testing.server_thread import ServerThread
from tests.integrations.conftest import COLLECTION, GLASS_ANSWER, GLASS_QUESTION

SECRET = "The vault code is 4711."


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An allowed root holding a note and a symlink that leads out of it, and a folder outside it."""
    root = tmp_path_factory.mktemp("allowed")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text(SECRET)
    (root / "notes").mkdir()
    (root / "notes" / "bus.md").write_text("The town bus leaves the station every 20 minutes.")
    (root / "notes" / "vault.txt").symlink_to(outside / "secret.txt")
    return root, outside


@pytest.fixture(scope="module")
def http_url(rag: AgenticRAG, folders: tuple[Path, Path]) -> Iterator[str]:
    root, _ = folders
    with ServerThread(create_server(rag, allowed_roots=[root]).streamable_http_app()) as server:
        yield server.url + "/mcp"


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    return result.structured_content


def error_text(result: Any) -> str:
    assert result.is_error
    return " ".join(block.text for block in result.content)


async def sources(rag: AgenticRAG) -> set[str]:
    return {doc.source for doc in await rag.list_documents_async()}


async def test_http_client_lists_the_tools_and_ask_answers_with_numbered_sources(http_url: str) -> None:
    async with Client(http_url) as client:
        tools = await client.list_tools()
        assert {tool.name for tool in tools.tools} == {"search", "ask", "ingest"}

        answer = structured(await client.call_tool("ask", {"question": GLASS_QUESTION}))
        assert GLASS_ANSWER in answer["answer"]
        cited = answer["sources"][0]
        assert (cited["number"], cited["source"]) == (1, "recycling.md")
        assert "[1]" in answer["answer"]

        passages = structured(await client.call_tool("search", {"query": GLASS_QUESTION, "top_k": 1}))
        assert [(p["number"], p["source"]) for p in passages["passages"]] == [(1, "recycling.md")]

        empty = await client.call_tool("ask", {"question": "  "})  # a MiniError reaches the model, worded
        assert "empty" in error_text(empty).lower()


async def test_ingest_refuses_paths_outside_the_root_and_skips_links_out_of_it(
    http_url: str, rag: AgenticRAG, folders: tuple[Path, Path]
) -> None:
    root, outside = folders
    before = await sources(rag)
    async with Client(http_url) as client:
        for path in (str(outside), str(outside / "secret.txt"), str(root / "notes" / "vault.txt"), "../"):
            refused = await client.call_tool("ingest", {"paths": [str(root / "notes" / "bus.md"), path]})
            message = error_text(refused)
            assert "outside the allowed roots" in message and "nothing was indexed" in message
        assert await sources(rag) == before  # not even the allowed file of a refused call

        # A folder under the root: its files are indexed, the link out of it is skipped and named.
        report = structured(await client.call_tool("ingest", {"paths": ["notes"]}))
    assert report["files_added"] == 1 and report["files_failed"] == 0
    assert report["skipped_outside_roots"] == [str(root / "notes" / "vault.txt")]
    assert await sources(rag) == before | {str(root / "notes" / "bus.md")}
    assert all("4711" not in hit.text for hit in await rag.search_async("vault code", top_k=10))


async def test_stdio_session_lists_the_tools_and_answers(
    rag: AgenticRAG, store_dir: Path, tmp_path: Path
) -> None:
    env = {
        # Only what the server needs: the SDK passes a minimal environment to the subprocess.
        "PYTHONPATH": os.pathsep.join(sys.path),
        "MINI_URI": str(store_dir),
        "MINI_COLLECTION": COLLECTION,
        "MINI_CACHE_DIR": os.environ["MINI_CACHE_DIR"],  # the session's ONNX graph, built once
        "HF_HUB_OFFLINE": "1",
    }
    # cwd: an empty folder, so no mini.toml or .env of the developer's changes the settings.
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mini.cli.main", "mcp"], env=env, cwd=tmp_path
    )
    async with Client(params) as client:
        tools = await client.list_tools()
        assert {tool.name for tool in tools.tools} == {"search", "ask", "ingest"}
        answer = structured(await client.call_tool("ask", {"question": GLASS_QUESTION}))
        refused = await client.call_tool("ingest", {"paths": [str(tmp_path)]})
    assert GLASS_ANSWER in answer["answer"]
    assert answer["sources"][0]["source"] == "recycling.md"
    assert "--allow-root" in error_text(refused)  # no root given: paths are refused
