"""QdrantBackend's server code path (`AsyncQdrantClient`, HTTP status errors, the api-key header) against an
in-process fake Qdrant REST server answering from qdrant-client's local mode (`tests.stores.qdrant_rest`): the
store contract, payload indexes, error mapping and secrets."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from mini.errors import StoreError
from mini.stores.base import Record
from mini.stores.filters import parse_filter
from mini.stores.qdrant import QdrantBackend
from mini.testing.contracts import Check, check_keyword_search, rows, unit
from tests.stores.qdrant_rest import SERVER_CHECKS, FakeQdrant, run_check, serve

SECRET = "sk-secret-123"
Factory = Callable[..., QdrantBackend]


@pytest.fixture
async def make() -> AsyncIterator[Factory]:
    made: list[QdrantBackend] = []

    def factory(uri: str, name: str = "t", **kwargs: Any) -> QdrantBackend:
        made.append(QdrantBackend(uri, collection_name=name, **kwargs))
        return made[-1]

    yield factory
    for backend in made:
        await backend.aclose()


async def test_api_key_stays_out_of_repr_logs_and_errors_and_failures_are_quick(
    make: Factory, caplog: pytest.LogCaptureFixture, recwarn: pytest.WarningsRecorder
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = make("qdrant://127.0.0.1:1", token=SECRET, timeout=3)
    assert SECRET not in repr(backend)
    assert SECRET not in repr(backend._conn)
    for call in (backend.count, lambda: backend.upsert(rows(1)), lambda: backend.search(unit(0), top_k=1)):
        started = time.perf_counter()
        with pytest.raises(StoreError) as info:
            await call()
        assert time.perf_counter() - started < 5
        assert SECRET not in str(info.value)
        assert str(info.value).startswith("Qdrant ") and "failed" in str(info.value)
        assert info.value.__cause__ is not None  # the client's error stays attached
    assert SECRET not in caplog.text
    # qdrant-client warns about an API key over http; we pass the key so that it does not.
    assert [str(w.message) for w in recwarn.list] == []


@pytest.fixture
async def fake_server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, FakeQdrant]]:
    fake = FakeQdrant(SECRET, getattr(request, "param", None))
    try:
        async with serve(fake) as uri:
            yield uri, fake
    finally:
        fake.local.close()


@pytest.mark.parametrize("check", SERVER_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_store_contract_over_the_server_code_path(
    check: Check, fake_server: tuple[str, FakeQdrant]
) -> None:
    await run_check(check, fake_server[0], SECRET)


async def test_server_path_creates_indexes_maps_status_errors_and_redacts(
    fake_server: tuple[str, FakeQdrant], make: Factory
) -> None:
    uri, fake = fake_server
    backend = make(uri, token=SECRET)
    assert await backend.count() == 0  # 404 from the server: a missing collection reads as empty
    assert fake.calls == ["get_collection"]
    await backend.insert(rows(3))
    assert fake.indexes == ["metadata.source", "id"]
    assert await backend.count(parse_filter({"source": "s1"})) == 1
    wrong = make(uri, token="sk-wrong-456")
    with pytest.raises(StoreError) as info:
        await wrong.count()
    assert "401" in str(info.value) and "sk-wrong-456" not in str(info.value)
    assert "***" in str(info.value)  # the server echoed the key; the message shows it redacted
    # A collection dropped behind the backend's back: reads are empty again, writes recreate it.
    await asyncio.to_thread(fake.local.delete_collection, "t")
    assert await backend.search(unit(0), top_k=1) == []
    await backend.upsert(rows(2))
    assert await backend.count() == 2


@pytest.mark.parametrize("fake_server", ["1.16.0"], indirect=True)
async def test_keyword_contract_on_the_servers_own_bm25(fake_server: tuple[str, FakeQdrant]) -> None:
    uri, fake = fake_server
    await run_check(check_keyword_search, uri, SECRET)
    # Texts and queries went to the server as qdrant/bm25 documents; the collection says which mode it has.
    assert {d.model for d in fake.documents} == {"qdrant/bm25"}
    assert any(d.text == "zebra river zebra" for d in fake.documents)
    sparse = fake.local.get_collection("keyword").config.params.sparse_vectors or {}
    assert set(sparse) == {"bm25-server"}
    reopened = QdrantBackend(uri, collection_name="keyword", token=SECRET)
    try:
        await reopened.count()
        assert reopened.keyword_mode == "server"  # read from the collection
    finally:
        await reopened.aclose()


@pytest.mark.parametrize("fake_server", ["1.15.2"], indirect=True)
async def test_keyword_mode_is_chosen_at_creation_and_kept_on_reopening(
    fake_server: tuple[str, FakeQdrant], make: Factory
) -> None:
    uri, fake = fake_server
    old = make(uri, token=SECRET)
    assert old.keyword_mode is None  # nothing open yet
    await old.insert([Record("a", unit(0), "quokka island", {})])
    assert old.keyword_mode == "client"  # a server before 1.15.3: the terms are made here
    # The server is upgraded: the existing collection keeps its mode, new collections get the server's.
    fake.version = "1.17.1"
    reopened = make(uri, token=SECRET)
    await reopened.upsert([Record("b", unit(1), "another quokka", {})])
    assert reopened.keyword_mode == "client" and fake.documents == []
    assert [h.id for h in await reopened.keyword_search("quokka", top_k=5)] == ["b", "a"]
    fresh = make(uri, name="fresh", token=SECRET)
    await fresh.upsert([Record("c", unit(2), "quokka", {})])
    assert fresh.keyword_mode == "server"
    assert [h.id for h in await fresh.keyword_search("quokkas", top_k=5)] == ["c"]
    assert [d.text for d in fake.documents] == ["quokka", "quokkas"]
    # A server that does not tell its version: the terms are made here.
    fake.version = None
    unknown = make(uri, name="unknown", token=SECRET)
    await unknown.upsert([Record("d", unit(3), "quokka", {})])
    assert unknown.keyword_mode == "client"
