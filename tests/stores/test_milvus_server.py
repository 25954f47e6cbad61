"""The Milvus server path (`AsyncMilvusClient`, `milvus://host:port`) against Milvus Lite's own gRPC server in
its own process, beyond the store contract it passes in tests/stores/test_contracts.py ("milvus-lite-server"):
what the backend picks on a Lite server, that it scores like a Lite path, and a server that went away."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from mini.errors import StoreError
from mini.stores.base import Record
from mini.stores.milvus import MilvusBackend, _LiteServer
from mini.stores.milvus.rows import SPARSE_FIELD, VECTOR_FIELD
from mini.testing.contracts import KEYWORD_ROWS, unit

Make = Callable[..., MilvusBackend]


@pytest.fixture
async def make(milvus_lite_server_url: str) -> AsyncIterator[Make]:
    """Backends on the session's Lite server (a URL by default) under this test's collection names."""
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    made: list[MilvusBackend] = []

    def factory(name: str = "t", uri: str | None = None, **kwargs: Any) -> MilvusBackend:
        made.append(MilvusBackend(uri or milvus_lite_server_url, collection_name=prefix + name, **kwargs))
        return made[-1]

    yield factory
    for backend in made:
        await backend.drop()
        await backend.aclose()


def keyword_records() -> list[Record]:
    return [Record(i, unit(n), text, meta) for n, (i, text, meta) in enumerate(KEYWORD_ROWS)]


async def test_a_lite_server_gets_exact_search_and_scores_bm25_like_a_lite_path(
    make: Make, milvus_lite_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = make("kw")
    assert server.url is not None and server.path is None
    with caplog.at_level(logging.ERROR):
        await server.insert(keyword_records())
    # pymilvus's index poll meets Lite's missing method: expected there, so no ERROR (with traceback) reaches
    # the user's logs.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    # Lite's server refuses AUTOINDEX on a sparse field; the backend asks the server what it is and picks
    # what a Lite path gets: FLAT (exact) and SPARSE_INVERTED_INDEX with k1 1.2 (Lite's default is 1.5).
    describe = server._client.call
    vector = await describe("describe_index", server.collection_name, VECTOR_FIELD)
    sparse = await describe("describe_index", server.collection_name, SPARSE_FIELD)
    assert (vector["index_type"], sparse["index_type"]) == ("FLAT", "SPARSE_INVERTED_INDEX")
    # Equal BM25 scores say k1 is 1.2 on both (Lite does not report index parameters): "zebra river zebra".
    local = make("kw", uri=milvus_lite_uri)
    await local.insert(keyword_records())
    for query in ["zebra", "budget council", "zebra town budget"]:
        got = await server.keyword_search(query, top_k=5)
        expected = await local.keyword_search(query, top_k=5)
        assert [h.id for h in got] == [h.id for h in expected]
        assert [h.score for h in got] == pytest.approx([h.score for h in expected])
    assert [h.id for h in await server.search(unit(2), top_k=1)] == ["k2"]


async def test_a_server_that_went_away_raises_store_error(tmp_path: Path) -> None:
    path = str(tmp_path / "gone.db")
    url = _LiteServer.acquire(path)
    backend = MilvusBackend(url, collection_name="gone", connect_timeout=2, request_timeout=5)
    try:
        await backend.upsert([Record("a", unit(0), "alpha", {})])
        assert await backend.count() == 1
    finally:
        _LiteServer.release(path)  # the server process exits; the client's channel is still open
    try:
        with pytest.raises(StoreError, match="Milvus count failed"):
            await backend.count()
    finally:
        await backend.aclose()
