"""Tests for mini.ingest.web against a real local aiohttp server (127.0.0.1, random port; never the internet)."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from mini.errors import DocumentParseError, InvalidInputError
from mini.ingest.web import Fetched, UrlFetcher, detect_file_type, is_url, redact_url
from tests.ingest.web_site import DOCX_MEDIA, HTML, Site

FAST = 0.001  # initial_backoff: retries in tests wait milliseconds, not half seconds


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- pure functions -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("http://example.com", True),
        ("https://example.com/a.pdf", True),
        ("HTTPS://EXAMPLE.COM", True),
        ("Http://x", True),
        ("ftp://example.com", False),
        ("file:///etc/passwd", False),
        ("example.com", False),
        ("/tmp/http://x", False),
        ("", False),
        (b"http://example.com", False),
        (None, False),
        (42, False),
    ],
)
def test_is_url(item: object, expected: bool) -> None:
    assert is_url(item) is expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://alice:s3cret@example.com:8443/a?b=1#c", "https://example.com:8443/a?b=1#c"),
        ("http://alice@example.com/", "http://example.com/"),
        ("http://a%40b:p%3Aw@host/x", "http://host/x"),
        ("https://example.com/a@b", "https://example.com/a@b"),  # an @ in the path is not userinfo
        ("https://example.com/", "https://example.com/"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    ("content_type", "url", "data", "expected"),
    [
        ("text/html", "https://x/", b"", "html"),
        ("text/html; charset=utf-8", "https://x/", b"", "html"),
        ("TEXT/HTML", "https://x/", b"", "html"),
        ("application/xhtml+xml", "https://x/", b"", "html"),
        ("text/plain", "https://x/a", b"", "txt"),
        ("text/plain; charset=utf-8", "https://x/README.md", b"", "md"),
        ("text/plain", "https://x/notes.markdown?raw=1", b"", "md"),
        ("text/plain", "https://x/page.pdf", b"", "txt"),  # the server says text: a .pdf suffix does not win
        ("text/markdown", "https://x/", b"", "md"),
        ("application/pdf", "https://x/", b"", "pdf"),
        (DOCX_MEDIA, "https://x/", b"", "docx"),
        ("application/json", "https://x/", b"", "json"),
        ("application/x-ndjson", "https://x/", b"", "jsonl"),
        ("application/jsonl", "https://x/", b"", "jsonl"),
        ("application/x-jsonlines", "https://x/", b"", "jsonl"),
        # no or generic type: the suffix, then the bytes
        ("", "https://x/a.pdf", b"", "pdf"),
        ("application/octet-stream", "https://x/A.PDF", b"", "pdf"),
        ("application/octet-stream", "https://x/a.htm", b"", "html"),
        ("application/octet-stream", "https://x/a.txt", b"", "txt"),
        ("application/octet-stream", "https://x/a.md", b"", "md"),
        ("application/octet-stream", "https://x/a.docx", b"PK\x03\x04", "docx"),
        ("application/octet-stream", "https://x/a.json", b"", "json"),
        ("application/octet-stream", "https://x/a.jsonl", b"", "jsonl"),
        ("application/octet-stream", "https://x/download?id=3", b"%PDF-1.7\n", "pdf"),
        ("", "https://x/", b"\xef\xbb\xbf \n<!DOCTYPE HTML><html>", "html"),
        ("", "https://x/", b"<HTML><body>", "html"),
        ("application/zip", "https://x/report.docx", b"PK\x03\x04rest", "docx"),
        # unsupported
        ("application/zip", "https://x/archive.zip", b"PK\x03\x04", None),
        ("application/zip", "https://x/report.docx", b"not a zip", None),
        ("image/png", "https://x/a.png", b"\x89PNG", None),
        ("image/png", "https://x/a.pdf", b"%PDF-", None),  # a declared type is believed
        ("application/octet-stream", "https://x/a.bin", b"\x00\x01", None),
        ("", "https://x/", b"just some bytes", None),
    ],
)
def test_detect_file_type(content_type: str, url: str, data: bytes, expected: str | None) -> None:
    assert detect_file_type(content_type, url, data) == expected


def test_construction_does_no_io_and_needs_no_loop() -> None:
    fetcher = UrlFetcher(concurrency=3, timeout=1.0)
    assert fetcher.concurrency == 3
    assert not fetcher._sessions._entries  # nothing created yet


@pytest.mark.parametrize(
    "kwargs", [{"concurrency": 0}, {"timeout": 0}, {"max_bytes": 0}, {"max_retries": -1}]
)
def test_bad_settings_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidInputError):
        UrlFetcher(**kwargs)  # type: ignore[arg-type]


def test_retry_delay_honours_retry_after_as_a_capped_floor() -> None:
    fetcher = UrlFetcher(initial_backoff=0.5)
    for _ in range(50):
        assert 0.0 <= fetcher._retry_delay(1) <= 0.5  # full jitter
        assert 0.0 <= fetcher._retry_delay(2) <= 1.0
        assert 2.0 <= fetcher._retry_delay(1, retry_after=2.0) <= 3.05
        assert 30.0 <= fetcher._retry_delay(1, retry_after=3600.0) <= 32.0  # capped at 30 s (+ jitter)


# --- fetching from the local server -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "file_type", "content_type"),
    [
        ("/page.html", "html", "text/html"),
        ("/notes", "txt", "text/plain"),
        ("/docs/readme.md", "md", "text/plain"),
        ("/paper", "pdf", "application/pdf"),
        ("/files/report.pdf", "pdf", "application/octet-stream"),
        ("/blob", "html", "application/octet-stream"),
    ],
)
async def test_fetch_detects_type(site: Site, path: str, file_type: str, content_type: str) -> None:
    async with UrlFetcher() as fetcher:
        got = await fetcher.fetch(site.url(path))
    assert isinstance(got, Fetched)
    assert got.file_type == file_type
    assert got.content_type == content_type
    assert got.url == got.final_url == site.url(path)
    assert got.data


async def test_fetch_returns_body_and_sends_user_agent(site: Site) -> None:
    async with UrlFetcher(user_agent="mini-test/1.0") as fetcher:
        got = await fetcher.fetch(site.url("/page.html"))
    assert got.data == HTML
    assert site.user_agents == ["mini-test/1.0"]


async def test_redirect_is_followed(site: Site) -> None:
    async with UrlFetcher() as fetcher:
        got = await fetcher.fetch(site.url("/old"))
    assert got.url == site.url("/old")
    assert got.final_url == site.url("/page.html")
    assert got.file_type == "html"


async def test_redirect_loop_fails(site: Site) -> None:
    async with UrlFetcher() as fetcher:
        with pytest.raises(DocumentParseError, match="too many redirects"):
            await fetcher.fetch(site.url("/loop"))
    assert site.hits["/loop"] == 6  # the URL and the default 5 redirects, once: not retried


async def test_404_fails_at_once(site: Site) -> None:
    async with UrlFetcher(max_retries=2, initial_backoff=FAST) as fetcher:
        with pytest.raises(DocumentParseError) as info:
            await fetcher.fetch(site.url("/missing"))
    assert info.value.reason == "HTTP 404 Not Found"
    assert info.value.path == site.url("/missing")
    assert site.hits["/missing"] == 1


@pytest.mark.parametrize(
    ("path", "max_retries", "data"),
    [
        pytest.param("/flaky", 2, b"recovered", id="500"),
        pytest.param("/cut", 1, b"whole", id="truncated-body"),
    ],
)
async def test_a_failed_attempt_is_retried(site: Site, path: str, max_retries: int, data: bytes) -> None:
    async with UrlFetcher(max_retries=max_retries, initial_backoff=FAST) as fetcher:
        got = await fetcher.fetch(site.url(path))
    assert got.data == data
    assert site.hits[path] == 2


async def test_persistent_5xx_gives_up_after_max_retries(site: Site) -> None:
    async with UrlFetcher(max_retries=2, initial_backoff=FAST) as fetcher:
        with pytest.raises(DocumentParseError) as info:
            await fetcher.fetch(site.url("/down"))
    assert info.value.reason.startswith("HTTP 503 Service Unavailable")
    assert "3 attempts" in info.value.reason
    assert site.hits["/down"] == 3


async def test_no_retries_when_max_retries_is_zero(site: Site) -> None:
    async with UrlFetcher(max_retries=0, initial_backoff=FAST) as fetcher:
        with pytest.raises(DocumentParseError, match="HTTP 500"):
            await fetcher.fetch(site.url("/flaky"))
    assert site.hits["/flaky"] == 1


async def test_429_with_retry_after_is_retried(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    # Default backoff: with Retry-After: 0 the wait is the header's (0) plus at most 50 ms of jitter, not the
    # exponential backoff's up-to-half-a-second. The delay chosen is recorded, not timed.
    delays: list[float] = []
    choose = UrlFetcher._retry_delay

    def recording(self: UrlFetcher, retry: int, retry_after: float | None = None) -> float:
        delays.append(choose(self, retry, retry_after))
        return delays[-1]

    monkeypatch.setattr(UrlFetcher, "_retry_delay", recording)
    async with UrlFetcher(max_retries=2) as fetcher:
        got = await fetcher.fetch(site.url("/limited"))
    assert got.data == b"served"
    assert site.hits["/limited"] == 2
    assert len(delays) == 1 and 0.0 <= delays[0] <= 0.05


async def test_timeout_is_retried_then_fails(site: Site) -> None:
    async with UrlFetcher(timeout=0.2, max_retries=2, initial_backoff=FAST) as fetcher:
        started = time.monotonic()
        with pytest.raises(DocumentParseError) as info:
            await fetcher.fetch(site.url("/slow"))
        elapsed = time.monotonic() - started
    assert "timed out after 0.2s" in info.value.reason
    assert site.hits["/slow"] == 3  # the first attempt + max_retries
    # The bound is the point: one attempt that did not time out would alone take the page's 5 s; three
    # attempts cut at 0.2 s stay far below that even on a loaded machine.
    assert elapsed < 5.0


async def test_connection_refused(site: Site) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/x.html"
    async with UrlFetcher(max_retries=1, initial_backoff=FAST) as fetcher:
        with pytest.raises(DocumentParseError) as info:
            await fetcher.fetch(url)
    assert info.value.reason.startswith("cannot connect: ")
    assert "2 attempts" in info.value.reason


async def test_oversized_body_with_content_length(site: Site) -> None:
    async with UrlFetcher(max_bytes=1000) as fetcher:
        with pytest.raises(DocumentParseError, match="larger than 1000 bytes"):
            await fetcher.fetch(site.url("/big"))


async def test_oversized_content_length_is_rejected_before_reading(site: Site) -> None:
    # The body stalls for 5 s after 10 bytes (and the timeout is longer still): only a header check fails
    # well before the stall ends. The bound is the point; 4 s of margin holds on a loaded machine.
    async with UrlFetcher(max_bytes=1000, timeout=30.0, initial_backoff=FAST) as fetcher:
        started = time.monotonic()
        with pytest.raises(DocumentParseError, match="larger than 1000 bytes"):
            await fetcher.fetch(site.url("/big-declared"))
        assert time.monotonic() - started < 4.0
    assert site.hits["/big-declared"] == 1  # not retried


async def test_oversized_chunked_body_is_cut_off(site: Site) -> None:
    async with UrlFetcher(max_bytes=2500) as fetcher:
        with pytest.raises(DocumentParseError, match="larger than 2500 bytes"):
            await fetcher.fetch(site.url("/chunked"))
    async with UrlFetcher(max_bytes=5000) as fetcher:  # exactly the limit is fine
        got = await fetcher.fetch(site.url("/chunked"))
    assert got.data == b"y" * 5000


async def test_unsupported_type_is_rejected_from_the_header(site: Site) -> None:
    # As above: the body stalls 5 s, so failing well before that means the header alone decided.
    async with UrlFetcher(timeout=30.0, initial_backoff=FAST) as fetcher:
        started = time.monotonic()
        with pytest.raises(DocumentParseError) as info:
            await fetcher.fetch(site.url("/image.png"))
        assert time.monotonic() - started < 4.0
    assert info.value.reason == "unsupported content type 'image/png'"
    assert site.hits["/image.png"] == 1


async def test_credentials_never_appear_in_errors(site: Site) -> None:
    url = site.url("/missing").replace("http://", "http://alice:s3cret@")
    async with UrlFetcher(initial_backoff=FAST) as fetcher:
        with pytest.raises(DocumentParseError) as info:
            await fetcher.fetch(url)
        assert info.value.path == site.url("/missing")
        assert info.value.reason == "HTTP 404 Not Found"
        assert "s3cret" not in str(info.value)
        assert "alice" not in str(info.value)

        refused = f"http://alice:s3cret@127.0.0.1:{_closed_port()}/doc.pdf"
        with pytest.raises(DocumentParseError) as info:
            await fetcher.fetch(refused)
        assert "s3cret" not in str(info.value)
        assert "alice" not in str(info.value)


async def test_credentials_are_sent_as_basic_auth_and_kept_out_of_final_url(site: Site) -> None:
    url = site.url("/page.html").replace("http://", "http://alice:s3cret@")
    async with UrlFetcher() as fetcher:
        got = await fetcher.fetch(url)
    assert got.url == url  # the source as given
    assert got.final_url == site.url("/page.html")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.pdf",
        "file:///etc/passwd",
        "/tmp/a.html",
        "http://",
        "https:///path",
        "http://h:x/",
    ],
)
async def test_non_http_urls_are_invalid_input(url: str) -> None:
    async with UrlFetcher() as fetcher:
        with pytest.raises(InvalidInputError):
            await fetcher.fetch(url)


async def test_invalid_input_message_is_redacted() -> None:
    async with UrlFetcher() as fetcher:
        with pytest.raises(InvalidInputError) as info:
            await fetcher.fetch("ftp://bob:hunter2@example.com/x")
    assert "hunter2" not in str(info.value)


async def test_concurrency_is_bounded(site: Site) -> None:
    async with UrlFetcher(concurrency=2) as fetcher:
        results = await asyncio.gather(*(fetcher.fetch(site.url(f"/concurrent/{n}")) for n in range(6)))
    assert [r.data for r in results] == [b"ok"] * 6
    assert sum(site.hits.values()) == 6
    assert site.peak_in_flight == 2


async def test_session_is_reused_and_reopened_after_aclose(site: Site) -> None:
    fetcher = UrlFetcher()
    await fetcher.fetch(site.url("/notes"))
    session = fetcher._sessions.get()
    await fetcher.fetch(site.url("/notes"))
    assert fetcher._sessions.get() is session
    await fetcher.aclose()
    assert session.closed
    got = await fetcher.fetch(site.url("/notes"))  # a new session after aclose
    assert got.data == b"plain words"
    await fetcher.aclose()
    await fetcher.aclose()  # idempotent
