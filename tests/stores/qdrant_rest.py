"""In-process Qdrant REST servers on 127.0.0.1 for `QdrantBackend`'s server code path: the routes it uses, the
api-key check and Qdrant's JSON envelopes here, the answers from a subclass (`FakeQdrant`: qdrant-client's
local mode; `tests.stores.qdrant_edge.EdgeQdrant`: Qdrant's own engine)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from qdrant_client import QdrantClient, models

from mini.stores.qdrant import QdrantBackend
from mini.stores.qdrant.points import server_has_bm25
from mini.stores.sparse import document_vector, query_vector
from mini.testing.contracts import CONTRACT_CHECKS, Check, check_keyword_search
from tests.aiohttp_app import serving

# The REST endpoints the backend calls: (verb, path pattern, method name given to `answer`).
ROUTES = [
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

SERVER_CHECKS = [
    # The servers answer on the test's own event loop, so a responsive-loop check would measure them.
    *(c for c in CONTRACT_CHECKS if "loop_responsive" not in c.__name__),
    check_keyword_search,
]


class RestError(ValueError):
    """A failure `answer` reports with the HTTP status a Qdrant server gives it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class RestQdrant:
    """The HTTP side of a fake Qdrant server; subclasses implement `answer` and `_bm25`.

    `version`: what `GET /` answers (None: 404, a server that does not tell). From 1.15.3 on it turns
    `qdrant/bm25` documents into BM25 terms (unit query weights, IDF from the collection) with `_bm25`."""

    def __init__(self, api_key: str | None, version: str | None = None) -> None:
        self.api_key = api_key
        self.version = version
        self.calls: list[str] = []
        self.indexes: list[str] = []
        self.documents: list[models.Document] = []  # every BM25 document received (writes and queries)

    def analyse(self, document: Any, *, query: bool) -> Any:
        """A vector input as sent, or the terms of a `qdrant/bm25` document."""
        if not isinstance(document, models.Document):
            return document
        if document.model.lower() != "qdrant/bm25" or not server_has_bm25(self.version):
            raise RestError(400, f"Wrong input: no inference for model {document.model}")
        self.documents.append(document)
        return self._bm25(document, query=query)

    def _bm25(self, document: models.Document, *, query: bool) -> models.SparseVector:
        raise NotImplementedError

    def answer(self, method: str, name: str, body: dict[str, Any]) -> Any:
        """The `result` of one REST call (`GET /`: the whole answer); failures raise ValueError."""
        raise NotImplementedError

    async def handle(self, request: web.Request) -> web.Response:
        if self.api_key is not None and request.headers.get("api-key") != self.api_key:
            # A careless server that echoes the key it got: the backend must still not repeat it.
            got = request.headers.get("api-key")
            return web.json_response({"status": {"error": f"Unauthorized: bad api-key {got}"}}, status=401)
        routes = (
            (m, re.fullmatch(pattern, request.path)) for verb, pattern, m in ROUTES if verb == request.method
        )
        method, match = next(((m, found) for m, found in routes if found), ("", None))
        if match is None:
            return web.json_response({"status": {"error": "no such route"}}, status=404)
        self.calls.append(method)
        body = await request.json() if request.can_read_body else {}
        try:
            result = self.answer(method, match.groupdict().get("c", ""), body)
        except ValueError as exc:
            status = getattr(exc, "status", None) or (
                404 if "not found" in str(exc) else 409 if "already exists" in str(exc) else 400
            )
            return web.json_response({"status": {"error": str(exc)}, "time": 0}, status=status)
        if method == "info":  # `GET /` answers the version object itself, not wrapped in "result"
            return web.json_response(result)
        return web.json_response({"result": result, "status": "ok", "time": 0})


class FakeQdrant(RestQdrant):
    """Answers from qdrant-client's local mode (a Python re-implementation of Qdrant), with
    `mini.stores.sparse` standing in for the server's BM25 analyser: what is checked is the wire protocol and
    the keyword mode's plumbing, not Qdrant's tokenizer."""

    def __init__(self, api_key: str | None, version: str | None = None) -> None:
        super().__init__(api_key, version)
        self.local = QdrantClient(":memory:")

    def _bm25(self, document: models.Document, *, query: bool) -> models.SparseVector:
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
                    point.vector = {k: self.analyse(v, query=False) for k, v in point.vector.items()}
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
                search.query.nearest = self.analyse(search.query.nearest, query=True)
            else:
                search.query = self.analyse(search.query, query=True)
        return [r.model_dump(mode="json") for r in local.query_batch_points(name, batch.searches)]


@asynccontextmanager
async def serve(server: RestQdrant) -> AsyncIterator[str]:
    """Serve `server` on a free loopback port of the running loop; yields its ``qdrant://`` URI."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", server.handle)
    async with serving(app) as address:
        yield f"qdrant://{address}"


async def run_check(check: Check, uri: str, token: str | None) -> None:
    """One contract check over backends on the server at `uri`, closed afterwards."""
    made: list[QdrantBackend] = []

    def factory(name: str = "c", dimension: int | None = None) -> QdrantBackend:
        made.append(QdrantBackend(uri, collection_name=name, dimension=dimension, token=token))
        return made[-1]

    try:
        await check(factory)
    finally:
        for backend in made:
            await backend.aclose()
