"""The server's front door (`mini.server.guard`): Host allow-list, cross-site writes, authentication before the
body is read, the docs behind the key, and the small body limit of the question routes."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mini.ingest.netguard import is_loopback
from mini.server import ServerSettings, create_app, errors
from mini.server.app import api
from mini.server.guard import authenticated, host_name, origin_of
from mini.server.limits import BodyLimit
from tests.server.test_documents import serve, sources_of_query, upload, wait_for

NOTES = b"# Heron lighthouse\n\nThe Heron lighthouse keeper feeds the gulls at 7 a.m. sharp.\n"
EVIL = {"origin": "https://evil.example", "sec-fetch-site": "cross-site"}


# -- pure helpers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost:8000", "localhost"),
        ("LOCALHOST.", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]:8000", "::1"),
        ("[0:0::1]", "::1"),
        ("[::ffff:127.0.0.1]:80", "127.0.0.1"),
        ("rag.example.com:443", "rag.example.com"),
        (
            "evil.example@localhost",
            None,
        ),  # user info: no browser sends it, a URL parser would say "localhost"
        ("::1", None),  # IPv6 must be bracketed
        ("[not:an:ip:x]", None),
        ("localhost:99999", None),
        ("local host", None),
        ("", None),
    ],
)
def test_host_headers_are_parsed_strictly(header: str, name: str | None) -> None:
    assert host_name(header) == name


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("HTTP://LocalHost:80", "http://localhost"),
        ("https://app.example:443/", "https://app.example"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("null", None),
        ("file://", None),
        ("http://evil.example@localhost", None),
        ("http://localhost:http", None),
    ],
)
def test_origins_are_normalised_and_anything_else_matches_nothing(url: str, origin: str | None) -> None:
    assert origin_of(url) == origin


def test_loopback_hosts_and_the_one_key_check() -> None:
    loopback = ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "::ffff:127.0.0.1", "localhost", "LOCALHOST."]
    assert all(map(is_loopback, loopback))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.5", "::ffff:10.0.0.1", "myhost", ""]))
    keys = frozenset({"k1", "k2"})
    assert authenticated({"authorization": "Bearer k2"}, keys)
    assert authenticated({"authorization": "bearer  k1 "}, keys) and authenticated({"x-api-key": "k1"}, keys)
    assert not authenticated({"authorization": "Bearer k3"}, keys)
    assert not authenticated({"authorization": "Basic k1"}, keys) and not authenticated({}, keys)
    assert authenticated({}, frozenset())


# -- in process: the guard answers before the app runs (no lifespan needed) -----------------------------------


class Probe:
    """Calls the ASGI app once with a request whose body arrives in 64 KiB pieces, counting the pieces read."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.reads = 0
        self.messages: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        start = self.reads * 65_536
        self.reads += 1
        piece = self.body[start : start + 65_536]
        return {"type": "http.request", "body": piece, "more_body": start + 65_536 < len(self.body)}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    async def post(self, app: Any, path: str, headers: dict[str, str]) -> int:
        raw = [
            (k.encode(), v.encode()) for k, v in {**headers, "content-length": str(len(self.body))}.items()
        ]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1:8000"), *raw],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        await app(scope, self.receive, self.send)
        status: int = self.messages[0]["status"]
        return status


def app_with(**settings: Any) -> FastAPI:
    """The real app, its settings on `app.state` as the lifespan would put them (the lifespan is not run)."""
    server_settings = ServerSettings(**settings)
    app = create_app(None, settings=server_settings)
    app.state.settings = server_settings
    return app


def client_of(app: FastAPI, host: str = "127.0.0.1:8000") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}")


async def test_an_unauthenticated_23_mb_body_gets_401_without_being_read() -> None:
    app = app_with(api_keys="k1")
    big = Probe(b'{"question": "q", "pad": [' + b"1," * 11_500_000 + b"1]}")
    assert await big.post(app, "/v1/query", {"content-type": "application/json"}) == 401
    assert big.reads == 0
    for path in ("/v1/documents", "/v1/chat/completions"):  # the upload route's larger limit too
        malformed = Probe(b"{not json")
        assert await malformed.post(app, path, {"content-type": "application/json"}) == 401, path
        assert malformed.reads == 0


async def test_question_routes_refuse_a_body_over_one_mib_before_reading_it() -> None:
    app = app_with(api_keys="k1")
    key = {"content-type": "application/json", "x-api-key": "k1"}
    for path in (
        "/v1/query",
        "/v1/query/stream",
        "/v1/chat/stream",
        "/v1/chat/completions",
        "/v1/agent/stream",
    ):
        body = Probe(b'{"question": "' + b"x" * (1024 * 1024) + b'"}')
        assert await body.post(app, path, key) == 413, path
        assert body.reads == 0


async def test_only_the_documents_route_takes_bodies_up_to_max_body_bytes() -> None:
    reached: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    limited = BodyLimit(inner, max_bytes=1_000, larger={"/v1/documents": 100_000})
    assert await Probe(b"x" * 50_000).post(limited, "/v1/documents", {}) == 204
    assert await Probe(b"x" * 50_000).post(limited, "/v1/query", {}) == 413
    assert await Probe(b"x" * 200_000).post(limited, "/v1/documents", {}) == 413
    assert reached == ["/v1/documents"]


async def test_malformed_json_gets_401_without_a_key_and_422_with_one() -> None:
    async with client_of(app_with(api_keys="k1")) as client:
        bad = {"content": b"{not json", "headers": {"content-type": "application/json"}}
        denied = await client.post("/v1/query", **bad)  # type: ignore[arg-type]
        assert denied.status_code == 401 and denied.json()["type"] == "unauthorized"
        assert denied.headers["www-authenticate"] == "Bearer"
        keyed = {**bad["headers"], "authorization": "Bearer k1"}  # type: ignore[dict-item]
        parsed = await client.post("/v1/query", content=b"{not json", headers=keyed)
        assert parsed.status_code == 422 and parsed.json()["type"] == "invalid_request"


async def test_docs_and_the_schema_need_the_key_unless_made_public() -> None:
    docs = ("/docs", "/redoc", "/openapi.json")
    async with client_of(app_with(api_keys="k1")) as client:
        for path in docs:
            assert (await client.get(path)).status_code == 401, path
            assert (await client.get(path, headers={"x-api-key": "k1"})).status_code == 200, path
        schema = (await client.get("/openapi.json", headers={"x-api-key": "k1"})).json()
        assert set(schema["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader"}
        # The chat page and its files stay public: the page asks for the key itself.
        for path in ("/", "/index.html", "/app.js", "/style.css", "/health"):
            assert (await client.get(path)).status_code == 200, path
        assert (await client.get("/nope.js")).status_code == 401  # not a file of the page: no probing
        assert (await client.post("/health")).status_code == 401  # public means GET/HEAD only
    async with client_of(app_with(api_keys="k1", public_docs=True)) as client:
        for path in docs:
            assert (await client.get(path)).status_code == 200, path
        assert (await client.get("/v1/stats")).status_code == 401


async def test_the_routers_still_check_the_key_when_mounted_without_the_guard() -> None:
    bare = FastAPI()
    errors.install(bare)
    bare.include_router(api)
    bare.state.settings = ServerSettings(api_keys="k1")
    async with client_of(bare) as client:
        assert (await client.get("/v1/stats")).status_code == 401


async def test_writes_from_another_site_are_refused_and_same_origin_or_no_origin_pass() -> None:
    # "Passes" shows as 422 here: the guard let it through, FastAPI parsed the malformed body.
    async with client_of(app_with()) as client:

        async def post(headers: dict[str, str]) -> httpx.Response:
            return await client.post(
                "/v1/query", content=b"{", headers={"content-type": "application/json", **headers}
            )

        for refused in (
            EVIL,
            {"origin": "https://evil.example"},
            {"origin": "null"},
            {"origin": "http://127.0.0.1:3000"},  # same host, other port: another origin
            {"origin": "https://127.0.0.1:8000"},  # other scheme
            {"sec-fetch-site": "cross-site"},
        ):
            response = await post(refused)
            assert response.status_code == 403, refused
            assert (
                response.json()["type"] == "forbidden" and "MINI_CORS_ORIGINS" in response.json()["message"]
            )
        for passed in (
            {},
            {"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"},
            {"sec-fetch-site": "same-origin"},
            {"sec-fetch-site": "none"},
        ):
            assert (await post(passed)).status_code == 422, passed
        assert (await client.delete("/v1/sessions/abc", headers=EVIL)).status_code == 403
        assert (
            await client.get("/health", headers=EVIL)
        ).status_code == 200  # reads: CORS keeps them private
    async with client_of(app_with(), host="localhost") as client:
        same = {"origin": "http://localhost:80", "content-type": "application/json"}  # default port
        assert (await client.post("/v1/query", content=b"{", headers=same)).status_code == 422


async def test_allowed_cors_origins_may_write_and_preflights_work_with_keys() -> None:
    app = app_with(api_keys="k1", cors_origins="https://app.example")
    async with client_of(app) as client:
        preflight = {"origin": "https://app.example", "access-control-request-method": "POST"}
        answered = await client.options("/v1/query", headers=preflight)
        assert answered.status_code == 200
        assert answered.headers["access-control-allow-origin"] == "https://app.example"
        allowed = {"origin": "https://app.example", "content-type": "application/json"}
        denied = await client.post("/v1/query", content=b"{", headers=allowed)
        # The guard's 401 carries the CORS headers, so the allowed page can read why.
        assert (
            denied.status_code == 401
            and denied.headers["access-control-allow-origin"] == "https://app.example"
        )
        keyed = await client.post("/v1/query", content=b"{", headers={**allowed, "x-api-key": "k1"})
        assert keyed.status_code == 422
        other = await client.post(
            "/v1/query", content=b"{", headers={**allowed, "origin": "https://evil.example"}
        )
        assert other.status_code == 403


@pytest.mark.parametrize("settings", [{}, {"api_keys": "k1"}])
async def test_a_host_that_is_not_allowed_is_refused_on_a_keyless_server_only(
    settings: dict[str, str],
) -> None:
    app = app_with(**settings)
    async with client_of(app) as client:
        for host in (
            "attacker.example",
            "attacker.example:8000",
            "localhost.attacker.example",
            "evil@localhost",
        ):
            response = await client.get("/health", headers={"host": host})
            if settings:  # with keys, any host (a rebound page has no key): see ServerSettings.allowed_hosts
                assert response.status_code == 200, host
                continue
            assert response.status_code == 400, host
            assert (
                response.json()["type"] == "invalid_host"
                and "MINI_ALLOWED_HOSTS" in response.json()["message"]
            )
        for host in ("localhost:8000", "LOCALHOST", "127.0.0.1:1234", "[::1]:8000", "localhost."):
            assert (await client.get("/health", headers={"host": host})).status_code == 200, host


async def test_allowed_hosts_replace_the_default() -> None:
    async with client_of(app_with(allowed_hosts="rag.example.com, *.corp.example")) as client:
        for host, status in (
            ("rag.example.com:8000", 200),
            ("a.corp.example", 200),
            ("corp.example", 400),
            ("localhost", 400),
            ("attacker.example", 400),
        ):
            assert (await client.get("/health", headers={"host": host})).status_code == status, host
    async with client_of(app_with(allowed_hosts="*")) as client:
        assert (await client.get("/health", headers={"host": "attacker.example"})).status_code == 200


async def test_a_websocket_from_a_host_that_is_not_allowed_is_closed() -> None:
    app = app_with()
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "scheme": "ws",
        "path": "/v1/ws",
        "headers": [(b"host", b"attacker.example")],
        "server": ("127.0.0.1", 8000),
    }
    await app(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]


# -- over TCP: real uvicorn --------------------------------------------------------------------------------------


@pytest.fixture
def keyless(sim: Any, tmp_path: Path) -> Iterator[httpx.Client]:
    with serve(tmp_path, sim) as client:
        yield client


def test_a_cross_site_upload_is_refused_and_nothing_is_indexed(keyless: httpx.Client) -> None:
    evil = keyless.post("/v1/documents", files=[("files", ("heron.md", NOTES))], headers=EVIL)
    assert evil.status_code == 403 and evil.json()["type"] == "forbidden"
    assert keyless.get("/v1/stats").json()["jobs"] == {"queued": 0, "running": 0, "done": 0, "failed": 0}
    assert keyless.get("/v1/stats").json()["chunks"] == 0
    # The same upload from the page itself (same origin), then from a script (no Origin), is accepted.
    own = {"origin": str(keyless.base_url).rstrip("/"), "sec-fetch-site": "same-origin"}
    same = keyless.post("/v1/documents", files=[("files", ("heron.md", NOTES))], headers=own)
    assert wait_for(keyless, same)["status"] == "done"
    assert sources_of_query(keyless, "When does the lighthouse keeper feed the gulls?")[0].endswith(
        "heron.md"
    )
    scripted = upload(keyless, ("other.md", b"# Other\n\nNothing to see.\n"))
    assert wait_for(keyless, scripted)["status"] == "done"


def test_dns_rebinding_is_refused_over_tcp(keyless: httpx.Client) -> None:
    port = keyless.base_url.port
    rebound = keyless.get("/v1/stats", headers={"host": f"attacker.example:{port}"})
    assert rebound.status_code == 400 and rebound.json()["type"] == "invalid_host"
    assert keyless.get("/", headers={"host": f"attacker.example:{port}"}).status_code == 400
    assert keyless.get("/v1/stats", headers={"host": f"localhost:{port}"}).status_code == 200
