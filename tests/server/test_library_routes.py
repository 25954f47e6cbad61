"""`GET /v1/documents` and `DELETE /v1/documents/{source}` on a real uvicorn server, over a store filled by the
real ingestion (simulated embeddings)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from mini import AgenticRAG, Document, EmbeddingModel, VectorStore
from mini.server import ServerSettings, create_app
from mini.testing.server_thread import ServerThread
from tests.query.conftest import SIM_KEY, make_rag
from tests.test_documents import ROWS, write_corpus

MEMOS = 5  # with the 3 files: enough documents for several pages


def count(store: Path, **where: str) -> int:
    vectors = VectorStore(str(store), collection_name="sim")
    try:
        return vectors.count(filter=where or None)
    finally:
        vectors.close()


@pytest.fixture
def corpus(sim: Any, tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """Three files (one a 4-row JSONL) and five memos ingested into `tmp_path/store`, collection "sim"."""
    files = write_corpus(tmp_path / "corpus")
    memos = [Document(f"Memo {i}: the pier closes at {i + 6} p.m.", f"memo-{i}") for i in range(MEMOS)]
    rag = make_rag(sim, tmp_path / "store")
    try:
        assert rag.index_documents([tmp_path / "corpus", *memos]).files_added == 3 + MEMOS
    finally:
        rag.close()
    return tmp_path / "store", files


@pytest.fixture
def client(sim: Any, corpus: tuple[Path, dict[str, Path]]) -> Iterator[httpx.Client]:
    rag = AgenticRAG(
        VectorStore(str(corpus[0]), collection_name="sim"),
        EmbeddingModel("openai:sim-embed", base_url=sim.base_url, api_key=SIM_KEY, dimension=384),
    )
    with ServerThread(create_app(rag, settings=ServerSettings())) as server:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            yield http
        assert server.loop is not None  # the rag's HTTP clients belong to the server's loop
        asyncio.run_coroutine_threadsafe(rag.aclose(), server.loop).result(timeout=10)


def all_pages(client: httpx.Client, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Every document, following next_offset; and the number of pages it took."""
    documents: list[dict[str, Any]] = []
    offset: int | None = 0
    pages = 0
    while offset is not None:
        response = client.get("/v1/documents", params={"limit": limit, "offset": offset})
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["total"] == 3 + MEMOS and len(page["documents"]) <= limit
        documents += page["documents"]
        offset = page["next_offset"]
        pages += 1
    return documents, pages


def test_documents_are_listed_in_pages_with_a_jsonl_file_once(
    client: httpx.Client, corpus: tuple[Path, dict[str, Path]]
) -> None:
    store, files = corpus
    jsonl = files["jsonl"].as_posix()
    documents, pages = all_pages(client, limit=3)

    sources = [d["source"] for d in documents]
    assert pages == 3 and sources == sorted(sources) and len(set(sources)) == len(sources) == 3 + MEMOS
    assert sources.count(jsonl) == 1 and not any("#" in s for s in sources)
    [faq] = [d for d in documents if d["source"] == jsonl]
    assert faq["chunks"] == len(ROWS) == count(store, origin=jsonl)
    assert faq["indexed_at"] is None and faq["file_type"] == "jsonl" and faq["fingerprint"]
    assert sum(d["chunks"] for d in documents) == count(store)

    first = client.get("/v1/documents").json()  # defaults: limit 100, offset 0
    assert (len(first["documents"]), first["next_offset"]) == (3 + MEMOS, None)
    beyond = client.get("/v1/documents", params={"offset": 50}).json()
    assert (beyond["documents"], beyond["total"], beyond["next_offset"]) == ([], 3 + MEMOS, None)
    for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}):
        assert client.get("/v1/documents", params=bad).status_code == 422


def test_deleting_a_jsonl_file_removes_all_its_rows(
    client: httpx.Client, corpus: tuple[Path, dict[str, Path]]
) -> None:
    store, files = corpus
    jsonl = files["jsonl"].as_posix()
    client.get("/v1/documents")  # a cached listing must not outlive the delete
    before = count(store)

    response = client.delete(f"/v1/documents/{quote(jsonl)}")

    assert response.status_code == 200, response.text
    deleted = [{"source": jsonl, "chunks": len(ROWS)}]
    assert response.json() == {"deleted": deleted, "documents": 1, "chunks": len(ROWS)}
    assert count(store) == before - len(ROWS) and count(store, origin=jsonl) == 0
    listed = client.get("/v1/documents").json()
    assert listed["total"] == 2 + MEMOS and jsonl not in [d["source"] for d in listed["documents"]]
    # Slashes may also come percent-encoded; a name that is not a path works as listed.
    assert client.delete(f"/v1/documents/{quote(files['md'].as_posix(), safe='')}").status_code == 200
    assert client.delete("/v1/documents/memo-3").json()["deleted"] == [{"source": "memo-3", "chunks": 1}]


def test_an_unknown_source_is_404_and_nothing_is_deleted(
    client: httpx.Client, corpus: tuple[Path, dict[str, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, files = corpus
    monkeypatch.chdir(files["md"].parent.parent)  # where "corpus/notes.md" would resolve to an indexed file
    before = count(store)
    for source in ("missing.md", f"{files['jsonl'].as_posix()}#kayak", "corpus/notes.md"):
        response = client.delete(f"/v1/documents/{quote(source)}")
        assert response.status_code == 404, response.text
        assert response.json()["type"] == "not_found" and repr(source) in response.json()["message"]
    # Relative paths are not resolved: the server's working directory means nothing to a client.
    assert client.delete("/v1/documents/").status_code == 422  # no source at all
    assert count(store) == before


def test_the_routes_need_the_api_key(sim: Any, corpus: tuple[Path, dict[str, Path]]) -> None:
    rag = make_rag(sim, corpus[0])
    with ServerThread(create_app(rag, settings=ServerSettings(api_keys="k1"))) as server:
        url = f"{server.url}/v1/documents"
        assert httpx.get(url, timeout=30).status_code == 401
        assert httpx.delete(f"{url}/memo-1", timeout=30).status_code == 401
        assert httpx.get(url, headers={"authorization": "Bearer k1"}, timeout=30).json()["total"] == 8
        assert server.loop is not None
        asyncio.run_coroutine_threadsafe(rag.aclose(), server.loop).result(timeout=10)
    assert count(corpus[0], source="memo-1") == 1
