"""Store fixtures: every backend as a `StoreTarget`, on one Milvus Lite child (file), one Lite server (URL) and
one Qdrant directory per run."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mini import _portal
from mini.stores.base import Record, VectorStoreBackend, create_backend

# "milvus-lite-server": the Milvus server path (AsyncMilvusClient) against Milvus Lite's own gRPC server, run
# as a separate process on a loopback port (issue 22: the server path, proven on every run).
LOCAL_KINDS = ["lancedb", "milvus-lite", "milvus-lite-server", "qdrant-local"]
KINDS: list[Any] = list(LOCAL_KINDS)
if os.environ.get("MINI_TEST_MILVUS_URI"):
    KINDS.append(pytest.param("milvus-server", marks=pytest.mark.integration))
if os.environ.get("MINI_TEST_QDRANT_URL"):
    KINDS.append(pytest.param("qdrant-server", marks=pytest.mark.integration))


async def assert_keyword_searches_coalesce(backend: Any, coalescer: Any, words: list[str]) -> None:
    """Concurrent keyword searches (`words`, eight times over) go out in fewer batches of `coalescer` than
    one per four queries."""
    queries = words * 8
    before = coalescer.batches
    await asyncio.gather(*(backend.keyword_search(q, top_k=2) for q in queries))
    assert coalescer.batches - before < len(queries) / 4


@dataclass(frozen=True)
class StoreTarget:
    """Where one test's collections live: collection names get `prefix` so tests can share a store."""

    kind: str
    uri: str
    token: str | None
    prefix: str

    def backend(self, name: str = "c", dimension: int | None = None) -> VectorStoreBackend:
        return create_backend(
            self.uri, collection_name=self.prefix + name, dimension=dimension, token=self.token
        )


def _shared(uri: str) -> Iterator[str]:
    # An anchor backend that has opened the store keeps it open for the session: the Milvus Lite child process
    # (about a second to start) and the Qdrant local client are then shared by every test instead of per test.
    # It writes a row: a read of a Milvus Lite file that does not exist yet starts nothing (issue 19).
    anchor = create_backend(uri, collection_name="anchor", dimension=None, token=None)
    _portal.run(anchor.upsert([Record("anchor", [1.0, 0.0], "anchor", {})]))
    yield uri
    _portal.run(anchor.aclose())


@pytest.fixture(scope="session")
def milvus_lite_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _shared(str(tmp_path_factory.mktemp("milvus") / "shared.db"))


@pytest.fixture(scope="session")
def milvus_lite_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`milvus://127.0.0.1:PORT` of a Milvus Lite gRPC server in its own process, one per test session (worker).

    The process is the one our Lite paths use (`python -m mini.stores.milvus._lite_server`: port on stdout,
    stops when its stdin closes), held by this fixture; backends reach it as a server, through the URL only."""
    from mini.stores.milvus import _LiteServer

    path = str(tmp_path_factory.mktemp("milvus-server") / "server.db")
    url = _LiteServer.acquire(path)  # e.g. http://127.0.0.1:40321
    try:
        yield url.replace("http://", "milvus://", 1)
    finally:
        _LiteServer.release(path)


@pytest.fixture(scope="session")
def qdrant_local_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _shared(f"qdrant+path://{tmp_path_factory.mktemp('qdrant') / 'shared'}")


@pytest.fixture(params=KINDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> StoreTarget:
    """One backend kind for this test: LanceDB in tmp_path; the shared Lite file, Lite server and Qdrant
    directory; real servers when `MINI_TEST_MILVUS_URI` / `MINI_TEST_QDRANT_URL` name them (tokens in
    `MINI_TEST_MILVUS_TOKEN` / `MINI_TEST_QDRANT_API_KEY`). Shared stores get unique collection names, dropped by `make`."""
    kind: str = request.param
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    if kind == "lancedb":
        return StoreTarget(kind, str(tmp_path / "lance"), None, "")
    if kind == "milvus-lite":
        return StoreTarget(kind, request.getfixturevalue("milvus_lite_uri"), None, prefix)
    if kind == "milvus-lite-server":
        return StoreTarget(kind, request.getfixturevalue("milvus_lite_server_url"), None, prefix)
    if kind == "qdrant-local":
        return StoreTarget(kind, request.getfixturevalue("qdrant_local_uri"), None, prefix)
    if kind == "milvus-server":
        uri, token = os.environ["MINI_TEST_MILVUS_URI"], os.environ.get("MINI_TEST_MILVUS_TOKEN")
    else:
        uri, token = os.environ["MINI_TEST_QDRANT_URL"], os.environ.get("MINI_TEST_QDRANT_API_KEY")
    return StoreTarget(kind, uri, token, prefix)


@pytest.fixture
async def make(target: StoreTarget) -> AsyncIterator[Callable[..., VectorStoreBackend]]:
    """A backend factory on `target`; its collections are dropped (shared stores) and backends closed after."""
    made: list[VectorStoreBackend] = []
    by_name: dict[str, VectorStoreBackend] = {}

    def factory(name: str = "c", dimension: int | None = None) -> VectorStoreBackend:
        made.append(target.backend(name, dimension))
        by_name.setdefault(name, made[-1])
        return made[-1]

    yield factory
    if target.prefix:
        for backend in by_name.values():
            await backend.drop()
    for backend in made:
        await backend.aclose()
