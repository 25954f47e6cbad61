"""The server's event streams (`/v1/query/stream`, the OpenAI-compatible stream) over a real uvicorn server:
keep-alive comments in silences, closing on disconnect, and how failures inside a stream are logged."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from mini import AgenticRAG
from mini._sse import KEEPALIVE, decode
from mini.errors import InvalidInputError
from mini.testing.server_thread import ServerThread
from mini.types import StreamEvent
from tests.clock import STATE_TIMEOUT, wait_until
from tests.servers import indexed_rag, serve

QUESTION = "When is glass collected for recycling?"
COMPLETION = {"model": "m", "messages": [{"role": "user", "content": QUESTION}], "stream": True}
ROUTES = [("/v1/query/stream", {"question": QUESTION}), ("/v1/chat/completions", COMPLETION)]


@pytest.fixture
def rag(sim: Any, tmp_path: Path) -> AgenticRAG:
    return indexed_rag(sim, tmp_path)


@pytest.fixture
def server(rag: AgenticRAG) -> Iterator[ServerThread]:
    # A tiny interval: any silence, such as a stream held below, gets keep-alives.
    with serve(rag, sse_keepalive_s=0.01) as running:
        yield running


class Held:
    """The query pipeline's stream (every streaming route's), held after its `sources` event until `release()`;
    `closed` is set once it is closed."""

    def __init__(self, rag: AgenticRAG, server: ServerThread) -> None:
        self.real = rag.pipeline.stream
        self.loop = server.loop
        self.gate = asyncio.Event()
        self.closed = threading.Event()

    def __call__(self, *args: Any, **options: Any) -> AsyncIterator[StreamEvent]:
        return self._events(*args, **options)

    async def _events(self, *args: Any, **options: Any) -> AsyncIterator[StreamEvent]:
        stream = self.real(*args, **options)
        try:
            async for event in stream:
                yield event
                if event.type == "sources":
                    await self.gate.wait()
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
            self.closed.set()

    def release(self) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.gate.set)


SOURCES = {"/v1/query/stream": b"event: sources\n", "/v1/chat/completions": b'"sources":'}


def read_until_held(chunks: Iterator[bytes], path: str) -> bytes:
    """The bytes up to a keep-alive sent after the sources (there may be others before: retrieval takes time)."""
    marker, received = SOURCES[path], b""
    while marker not in received or KEEPALIVE not in received[received.index(marker) :]:
        received += next(chunks)
    return received


def test_a_held_stream_gets_keepalives_and_then_completes(
    rag: AgenticRAG, server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = Held(rag, server)
    monkeypatch.setattr(rag.pipeline, "stream", held)
    with httpx.stream(
        "POST", f"{server.url}/v1/query/stream", json={"question": QUESTION}, timeout=30
    ) as response:
        chunks = response.iter_bytes()
        before = read_until_held(
            chunks, "/v1/query/stream"
        )  # the stream is held: only a keep-alive can end this wait
        held.release()
        received = before + b"".join(chunks)
    # The keep-alive came in the silence after `sources`, and our decoder skips every comment.
    assert [e.event for e in decode([before])] == ["sources"]
    events = list(decode([received]))
    kinds = [e.event for e in events]
    assert kinds[0] == "sources" and "token" in kinds and kinds[-1] == "done", kinds
    assert events[-1].json()["answer"] == "".join(e.json()["text"] for e in events if e.event == "token")


class KeepaliveWatch(httpx.HTTPTransport):
    """Calls `on_keepalive` when a response body brings a keep-alive comment (the openai SDK hides them)."""

    def __init__(self, on_keepalive: Any) -> None:
        super().__init__()
        self.on_keepalive = on_keepalive

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        response.stream = _Watched(response.stream, self.on_keepalive)
        return response


class _Watched(httpx.SyncByteStream):
    def __init__(self, stream: Any, on_keepalive: Any) -> None:
        self.stream = stream
        self.on_keepalive = on_keepalive

    def __iter__(self) -> Iterator[bytes]:
        tail = b""
        for chunk in self.stream:
            if KEEPALIVE in tail + chunk:
                self.on_keepalive()
            tail = (tail + chunk)[-len(KEEPALIVE) :]  # a comment split between two reads is still seen
            yield chunk

    def close(self) -> None:
        self.stream.close()


def test_the_openai_sdk_ignores_keepalives(
    rag: AgenticRAG, server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = Held(rag, server)
    monkeypatch.setattr(rag.pipeline, "stream", held)
    # The stream is released only once the SDK's own connection has received a keep-alive.
    http = httpx.Client(transport=KeepaliveWatch(held.release), timeout=30)
    with openai.OpenAI(
        base_url=server.url + "/v1",
        api_key="unused",
        max_retries=0,
        http_client=http,  # type: ignore[arg-type]  # the SDK's stubs name its vendored httpx
    ) as client:
        chunks = list(
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": QUESTION}], stream=True
            )
        )
    assert held.gate.is_set()
    assert chunks[0].model_extra and chunks[0].model_extra["sources"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize(("path", "body"), ROUTES)
def test_a_client_leaving_a_held_stream_closes_it_and_leaves_no_task(
    rag: AgenticRAG, server: ServerThread, monkeypatch: pytest.MonkeyPatch, path: str, body: dict[str, Any]
) -> None:
    held = Held(rag, server)
    monkeypatch.setattr(rag.pipeline, "stream", held)
    with httpx.stream("POST", server.url + path, json=body, timeout=30) as response:
        chunks = response.iter_bytes()
        read_until_held(chunks, path)
    # The client is gone while the stream waits for its next event: the server closes it without releasing it.
    assert held.closed.wait(STATE_TIMEOUT), "the held stream was never closed"
    assert not held.gate.is_set()

    async def pumps() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if t.get_name() == "mini-sse-frames"]

    assert server.loop is not None
    wait_until(
        lambda: not asyncio.run_coroutine_threadsafe(pumps(), server.loop).result(),  # type: ignore[arg-type]
        "a stream's frame task outlived it",
    )


def failing_stream(error: Exception) -> Any:
    def stream(*args: Any, **options: Any) -> AsyncIterator[StreamEvent]:
        async def events() -> AsyncIterator[StreamEvent]:
            yield StreamEvent("sources", [])
            raise error

        return events()

    return stream


def stream_errors(server: ServerThread, path: str, body: dict[str, Any]) -> list[Any]:
    with httpx.stream("POST", server.url + path, json=body, timeout=30) as response:
        events = list(decode(response.iter_bytes()))
    if path == "/v1/query/stream":
        return [e.json() for e in events if e.event == "error"]
    assert events[-1].data == "[DONE]"
    return [
        payload["error"] for payload in map(json.loads, (e.data for e in events[:-1])) if "error" in payload
    ]


@pytest.mark.parametrize(
    ("kind", "message", "level", "traced", "public"),
    [
        pytest.param(
            RuntimeError,
            "boom at /srv/secret/path.py",
            logging.ERROR,
            True,
            {"type": "internal_error", "message": "internal server error (see the server log)"},
            id="unexpected-error-with-its-traceback",
        ),
        pytest.param(
            InvalidInputError,
            "no such field",
            logging.INFO,
            False,
            {"type": "invalid_input", "message": "no such field"},
            id="user-error-one-info-line",
        ),
    ],
)
@pytest.mark.parametrize(("path", "body"), ROUTES)
def test_an_error_in_a_stream_is_logged_as_its_kind_deserves(
    rag: AgenticRAG,
    server: ServerThread,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    path: str,
    body: dict[str, Any],
    kind: type[Exception],
    message: str,
    level: int,
    traced: bool,
    public: dict[str, str],
) -> None:
    monkeypatch.setattr(rag.pipeline, "stream", failing_stream(kind(message)))
    with caplog.at_level(logging.INFO, logger="mini"):
        errors = stream_errors(server, path, body)
    # The client reads our type and a message for it: a bug's class and text are the log's.
    assert errors == [public]
    [record] = [r for r in caplog.records if r.name == "mini.server"]
    assert record.levelno == level and (record.exc_info is not None) is traced
    assert ("Traceback" in caplog.text) is traced
    if traced:  # an unexpected error: the traceback, ending with the error itself
        assert f"{kind.__name__}: {message}" in caplog.text
    else:  # a user error: one line that says what was wrong
        assert message in record.getMessage()


def test_the_pipeline_logs_a_provider_failure_as_a_warning_and_a_bug_with_its_traceback(
    rag: AgenticRAG,
    server: ServerThread,
    sim: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim.configure(error_fraction=1.0)
    with caplog.at_level(logging.INFO, logger="mini"):
        [error] = stream_errors(server, "/v1/query/stream", {"question": QUESTION})
    assert error == {"type": "provider_error", "message": "the model provider failed (see the server log)"}
    [record] = [r for r in caplog.records if r.name == "mini.query" and r.levelno >= logging.WARNING]
    assert record.levelno == logging.WARNING and record.exc_info is None
    sim.configure(error_fraction=0.0)
    caplog.clear()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("a bug")

    assert rag.llm is not None
    monkeypatch.setattr(rag.llm, "stream", broken)
    with caplog.at_level(logging.INFO, logger="mini"):
        [error] = stream_errors(server, "/v1/query/stream", {"question": QUESTION})
    assert error == {"type": "internal_error", "message": "internal server error (see the server log)"}
    [record] = [r for r in caplog.records if r.name == "mini.query" and r.levelno >= logging.WARNING]
    assert record.levelno == logging.ERROR and record.exc_info is not None
