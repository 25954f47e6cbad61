"""QdrantBackend's server code path (`AsyncQdrantClient`, HTTP status errors, the api-key header) against an
in-process fake Qdrant REST server: the store contract, payload indexes, error mapping and secrets."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from qdrant_client import QdrantClient, models

from mini.errors import StoreError
from mini.stores.base import Record
from mini.stores.filters import parse_filter
from mini.stores.qdrant import QdrantBackend
from mini.stores.qdrant.points import server_has_bm25
from mini.stores.sparse import document_vector, query_vector
from mini.testing.contracts import CONTRACT_CHECKS, Check, check_keyword_search, rows, unit

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


# A fake Qdrant server: the REST endpoints this backend uses, answered by a local-mode client, so the server
# code path (AsyncQdrantClient, HTTP status errors, the api-key header) runs without a real server.
_ROUTES = [
    ("GET", r"/", "info"),
    ("GET", r"/collections/(?P<c>[^/]+)", "get_collection"),
    ("PUT", r"/collections/(?P<c>[^/]+)", "create_collection"),
    ("DELETE", r"/collections/(?P<c>[^/]+)", "delete_collection"),
    ("PUT", r"/collections/(?P<c>[^/]+)/index", "create_payload_index"),
    ("PUT", r"/collections/(?P<c>[^/]+)/points", "upsert"),
    ("POST", r"/collections/(?P<c>[^/]+)/points", "retrieve"),
    ("POST", r"/collections/(?P<c>[^/]+)/points/delete", "delete"),
    ("POST", r"/collections/(?P<c>[^/]+)/points/count", "count"),
    ("POST", r"/collections/(?P<c>[^/]+)/points/scroll", "scroll"),
    ("POST", r"/collections/(?P<c>[^/]+)/points/query/batch", "query_batch_points"),
]


class FakeQdrant:
    """`version`: what `GET /` answers (None: 404, a server that does not tell). From 1.15.3 on it analyses
    `qdrant/bm25` documents the way the server does it in principle (text to BM25 terms, unit query weights,
    IDF from the collection), here with `mini.stores.sparse` standing in for the server's analyser: what is
    checked is the wire protocol and the mode's plumbing, not Qdrant's tokenizer."""

    def __init__(self, api_key: str | None, version: str | None = None) -> None:
        self.api_key = api_key
        self.version = version
        self.local = QdrantClient(":memory:")
        self.calls: list[str] = []
        self.indexes: list[str] = []
        self.documents: list[models.Document] = []  # every BM25 document received (writes and queries)

    def _analyse(self, document: Any, *, query: bool) -> Any:
        if not isinstance(document, models.Document):
            return document
        if document.model.lower() != "qdrant/bm25" or not server_has_bm25(self.version):
            raise ValueError(f"Wrong input: no inference for model {document.model}")
        self.documents.append(document)
        terms = (query_vector if query else document_vector)(document.text)
        return models.SparseVector(indices=list(terms.indices), values=list(terms.values))

    def answer(self, method: str, name: str, body: dict[str, Any]) -> Any:
        local = self.local
        if method == "info":
            if self.version is None:
                raise ValueError("route not found")
            return {"title": "qdrant - vector search engine", "version": self.version}
        if method == "get_collection":
            return local.get_collection(name).model_dump(mode="json")
        if method == "create_collection":
            create = models.CreateCollection.model_validate(body)
            return local.create_collection(
                name, vectors_config=create.vectors, sparse_vectors_config=create.sparse_vectors
            )
        if method == "delete_collection":
            local.get_collection(name)  # 404 when missing, like the server
            return local.delete_collection(name)
        if method == "create_payload_index":
            self.indexes.append(body["field_name"])
            return {"operation_id": 0, "status": "completed"}
        if method == "upsert":
            points = models.PointsList.model_validate(body).points
            for point in points:
                if isinstance(point.vector, dict):
                    point.vector = {k: self._analyse(v, query=False) for k, v in point.vector.items()}
            return local.upsert(name, points).model_dump(mode="json")
        if method == "retrieve":
            req = models.PointRequest.model_validate(body)
            found = local.retrieve(
                name, req.ids, with_payload=req.with_payload or False, with_vectors=req.with_vector or False
            )
            return [p.model_dump(mode="json") for p in found]
        if method == "delete":
            selector = models.FilterSelector.model_validate(body)
            return local.delete(name, selector).model_dump(mode="json")
        if method == "count":
            req_count = models.CountRequest.model_validate(body)
            return local.count(name, count_filter=req_count.filter).model_dump(mode="json")
        if method == "scroll":
            req_scroll = models.ScrollRequest.model_validate(body)
            page, offset = local.scroll(
                name,
                scroll_filter=req_scroll.filter,
                limit=req_scroll.limit or 10,
                offset=req_scroll.offset,
                with_payload=req_scroll.with_payload or False,
                with_vectors=req_scroll.with_vector or False,
            )
            return {"points": [p.model_dump(mode="json") for p in page], "next_page_offset": offset}
        batch = models.QueryRequestBatch.model_validate(body)
        for search in batch.searches:
            if isinstance(search.query, models.NearestQuery):
                search.query.nearest = self._analyse(search.query.nearest, query=True)
            else:
                search.query = self._analyse(search.query, query=True)
        return [r.model_dump(mode="json") for r in local.query_batch_points(name, batch.searches)]

    async def handle(self, request: web.Request) -> web.Response:
        if self.api_key is not None and request.headers.get("api-key") != self.api_key:
            # A careless server that echoes the key it got: the backend must still not repeat it.
            got = request.headers.get("api-key")
            return web.json_response({"status": {"error": f"Unauthorized: bad api-key {got}"}}, status=401)
        routes = (
            (m, re.fullmatch(pattern, request.path)) for verb, pattern, m in _ROUTES if verb == request.method
        )
        method, match = next(((m, found) for m, found in routes if found), ("", None))
        if match is None:
            return web.json_response({"status": {"error": "no such route"}}, status=404)
        self.calls.append(method)
        body = await request.json() if request.can_read_body else {}
        try:
            result = self.answer(method, match.groupdict().get("c", ""), body)
        except ValueError as exc:
            status = 404 if "not found" in str(exc) else 409 if "already exists" in str(exc) else 400
            return web.json_response({"status": {"error": str(exc)}, "time": 0}, status=status)
        if method == "info":  # `GET /` answers the version object itself, not wrapped in "result"
            return web.json_response(result)
        return web.json_response({"result": result, "status": "ok", "time": 0})


@pytest.fixture
async def fake_server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, FakeQdrant]]:
    fake = FakeQdrant(SECRET, getattr(request, "param", None))
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"qdrant://127.0.0.1:{port}", fake
    await runner.cleanup()
    fake.local.close()


SERVER_CHECKS = [
    *(c for c in CONTRACT_CHECKS if "loop_responsive" not in c.__name__),  # the fake blocks its loop
    check_keyword_search,
]


@pytest.mark.parametrize("check", SERVER_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_store_contract_over_the_server_code_path(
    check: Check, fake_server: tuple[str, FakeQdrant]
) -> None:
    uri, _ = fake_server
    made: list[QdrantBackend] = []

    def factory(name: str = "c", dimension: int | None = None) -> QdrantBackend:
        made.append(QdrantBackend(uri, collection_name=name, dimension=dimension, token=SECRET))
        return made[-1]

    try:
        await check(factory)
    finally:
        for backend in made:
            await backend.aclose()


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
    made: list[QdrantBackend] = []

    def factory(name: str = "c", dimension: int | None = None) -> QdrantBackend:
        made.append(QdrantBackend(uri, collection_name=name, dimension=dimension, token=SECRET))
        return made[-1]

    try:
        await check_keyword_search(factory)
        # Texts and queries went to the server as qdrant/bm25 documents; the collection says which mode it has.
        assert {d.model for d in fake.documents} == {"qdrant/bm25"}
        assert any(d.text == "zebra river zebra" for d in fake.documents)
        sparse = fake.local.get_collection("keyword").config.params.sparse_vectors or {}
        assert set(sparse) == {"bm25-server"}
        assert made[-1].keyword_mode == "server"  # the reopened object read it from the collection
    finally:
        for backend in made:
            await backend.aclose()


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
