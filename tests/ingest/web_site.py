"""A local aiohttp site for the web-fetching tests: one page per behaviour (redirects, failures that pass,
stalls, oversized and truncated bodies) and what its handlers observed."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"
HTML = b"<!DOCTYPE html><html><body><p>Hello</p></body></html>"
DOCX_MEDIA = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Site:
    """The local server plus what its handlers observed."""

    server: TestServer | None = None
    hits: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    peak_in_flight: int = 0
    two_in_flight: asyncio.Event = field(default_factory=asyncio.Event)
    user_agents: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        assert self.server is not None
        return str(self.server.make_url(path))

    @property
    def port(self) -> int:
        assert self.server is not None and self.server.port is not None
        return self.server.port


@asynccontextmanager
async def running_site(host: str = "127.0.0.1") -> AsyncIterator[Site]:
    """The site, listening on `host` (a loopback address) on a free port, for the duration of the block."""
    site = Site()
    server = site.server = TestServer(make_app(site), host=host, port=0)
    await server.start_server()
    try:
        yield site
    finally:
        await server.close()


def clear_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fetcher honours proxy variables; requests to the local site must not go through one."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def make_app(site: Site) -> web.Application:
    async def count(request: web.Request) -> None:
        site.hits[request.path] += 1

    async def page(request: web.Request) -> web.StreamResponse:
        await count(request)
        site.user_agents.append(request.headers.get("User-Agent", ""))
        return web.Response(body=HTML, content_type="text/html", charset="utf-8")

    async def text(request: web.Request) -> web.StreamResponse:
        return web.Response(text="plain words", content_type="text/plain")

    async def markdown_as_text(request: web.Request) -> web.StreamResponse:
        return web.Response(text="# Title\n\nbody", content_type="text/plain")

    async def pdf(request: web.Request) -> web.StreamResponse:
        return web.Response(body=PDF, content_type="application/pdf")

    async def octet(request: web.Request) -> web.StreamResponse:
        return web.Response(body=PDF, content_type="application/octet-stream")

    async def octet_html(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"\xef\xbb\xbf  \n" + HTML, content_type="application/octet-stream")

    async def old(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/page.html")

    async def loop(request: web.Request) -> web.StreamResponse:
        await count(request)
        raise web.HTTPFound("/loop")

    async def redirect(request: web.Request) -> web.StreamResponse:
        # /redirect?to=<anything>: the Location is sent as given (absolute, relative, another scheme).
        await count(request)
        raise web.HTTPFound(request.query["to"])

    async def hops(request: web.Request) -> web.StreamResponse:
        # /hops/3 -> /hops/2 -> /hops/1 -> /hops/0 -> /page.html: exactly n redirects.
        await count(request)
        left = int(request.match_info["n"])
        raise web.HTTPFound(f"/hops/{left - 1}" if left > 1 else "/page.html")

    async def missing(request: web.Request) -> web.StreamResponse:
        await count(request)
        raise web.HTTPNotFound()

    def fails_once(error: Callable[[], web.HTTPException], answer: str) -> Handler:
        """A page whose first request fails with `error()`, answered with `answer` after that."""

        async def handler(request: web.Request) -> web.StreamResponse:
            await count(request)
            if site.hits[request.path] == 1:
                raise error()
            return web.Response(text=answer, content_type="text/plain")

        return handler

    flaky = fails_once(web.HTTPInternalServerError, "recovered")
    limited = fails_once(lambda: web.HTTPTooManyRequests(headers={"Retry-After": "0"}), "served")

    async def down(request: web.Request) -> web.StreamResponse:
        await count(request)
        raise web.HTTPServiceUnavailable()

    async def slow(request: web.Request) -> web.StreamResponse:
        await count(request)
        await asyncio.sleep(5)  # cancelled when the client gives up (TestServer cancels handlers)
        return web.Response(text="too late", content_type="text/plain")

    async def big(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"x" * 2000, content_type="text/plain")

    async def big_declared(request: web.Request) -> web.StreamResponse:
        # Declares 10 MB, then stalls: only a client that trusts the header fails fast.
        await count(request)
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.content_length = 10_000_000
        await response.prepare(request)
        await response.write(b"x" * 10)
        await asyncio.sleep(5)
        return response

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(5):
            await response.write(b"y" * 1000)
        await response.write_eof()
        return response

    async def image(request: web.Request) -> web.StreamResponse:
        # Headers, a few bytes, then a stall: the type must be rejected from the header alone.
        await count(request)
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.content_length = 1_000_000
        await response.prepare(request)
        await response.write(b"\x89PNG\r\n\x1a\n")
        await asyncio.sleep(5)
        return response

    async def cut(request: web.Request) -> web.StreamResponse:
        # First hit: promises 100 bytes, sends 10, drops the connection. Second hit: a proper answer.
        await count(request)
        if site.hits[request.path] == 1:
            response = web.StreamResponse(headers={"Content-Type": "text/plain"})
            response.content_length = 100
            await response.prepare(request)
            await response.write(b"z" * 10)
            assert request.transport is not None
            request.transport.close()
            return response
        return web.Response(text="whole", content_type="text/plain")

    async def concurrent(request: web.Request) -> web.StreamResponse:
        await count(request)
        site.in_flight += 1
        site.peak_in_flight = max(site.peak_in_flight, site.in_flight)
        if site.in_flight >= 2:
            site.two_in_flight.set()
        try:
            # Hold the first request until a second one is in flight (the fetcher allows 2): the peak is
            # reached however slowly requests arrive. Would the fetcher send one at a time, this times out.
            await asyncio.wait_for(site.two_in_flight.wait(), timeout=30)
        finally:
            site.in_flight -= 1
        return web.Response(text="ok", content_type="text/plain")

    app = web.Application()
    app.router.add_get("/page.html", page)
    app.router.add_get("/notes", text)
    app.router.add_get("/docs/readme.md", markdown_as_text)
    app.router.add_get("/paper", pdf)
    app.router.add_get("/files/report.pdf", octet)
    app.router.add_get("/blob", octet_html)
    app.router.add_get("/old", old)
    app.router.add_get("/loop", loop)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/hops/{n}", hops)
    app.router.add_get("/missing", missing)
    app.router.add_get("/flaky", flaky)
    app.router.add_get("/down", down)
    app.router.add_get("/limited", limited)
    app.router.add_get("/slow", slow)
    app.router.add_get("/big", big)
    app.router.add_get("/big-declared", big_declared)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/image.png", image)
    app.router.add_get("/cut", cut)
    app.router.add_get("/concurrent/{n}", concurrent)
    return app
