"""A client that goes away cancels its request's upstream work, on every route that calls the model, streaming
or not, before or after the first event: real uvicorn, the simulated provider over HTTP, a raw socket as the
client (it must vanish at a moment the test picks), and the simulator's in-flight counter as the witness."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mini import AgenticRAG
from mini.server.cancel import CancelOnDisconnect
from mini.testing.server_thread import ServerThread
from tests.clock import STATE_TIMEOUT, wait_until
from tests.conftest import reset_sim
from tests.servers import indexed_rag, serve

QUESTION = "When is glass collected for recycling?"
# A simulated model call takes this long; the test asserts its end much earlier, so only a cancellation can
# have ended it. WITHIN_S is generous for a loaded 2-core machine (measured: a few ms, see the report in
# docs/security.md) and still well below the latency.
LATENCY_MS = 30_000
WITHIN_S = 10.0


@pytest.fixture(scope="module")
def rag(sim_server: Any, tmp_path_factory: pytest.TempPathFactory) -> AgenticRAG:
    reset_sim(sim_server)
    return indexed_rag(sim_server, tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def server(rag: AgenticRAG) -> Iterator[ServerThread]:
    with serve(rag) as running:
        yield running


@contextlib.contextmanager
def open_request(
    server: ServerThread, path: str, body: dict[str, Any] | None, method: str = "POST"
) -> Iterator[socket.socket]:
    """A request sent whole over a raw socket, its response unread; leaving the block drops the connection."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    payload = b"" if body is None else json.dumps(body).encode()
    kind = "" if body is None else f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{kind}\r\n"
    with socket.create_connection((host, int(port)), timeout=STATE_TIMEOUT) as client:
        client.sendall(head.encode() + payload)
        yield client


def read_until(client: socket.socket, marker: bytes) -> bytes:
    received = b""
    while marker not in received:
        chunk = client.recv(65536)
        assert chunk, f"the response ended before {marker!r}: {received!r}"
        received += chunk
    return received


def completion(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": QUESTION}], **extra}


def assert_cancelled(sim: Any) -> None:
    """The model call in flight ended long before its latency: the server closed it when its client left."""
    try:
        sim.wait_for("chat", in_flight=0, timeout=WITHIN_S)
    except TimeoutError as exc:
        raise AssertionError(f"the model call outlived its client: {exc}") from None
    assert sim.stats()["chat"]["clients_gone"] == 1  # ended by its client (our server) going away


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/v1/query", {"question": QUESTION}, id="query"),
        pytest.param("/v1/query/stream", {"question": QUESTION}, id="query-stream"),
        pytest.param("/v1/chat/completions", completion(), id="completions"),
        pytest.param("/v1/chat/completions", completion(stream=True), id="completions-stream"),
        pytest.param("/v1/chat/stream", {"message": QUESTION}, id="chat-stream"),
        pytest.param("/v1/agent/stream", {"question": QUESTION}, id="agent-stream"),
    ],
)
def test_a_client_leaving_before_the_first_event_cancels_the_model_call(
    server: ServerThread, sim: Any, path: str, body: dict[str, Any]
) -> None:
    sim.configure(chat_ms=LATENCY_MS)
    with open_request(server, path, body):
        # The first model call (the rewrite, or the agent's first turn) is in flight; nothing was answered yet.
        sim.wait_for("chat", in_flight=1, timeout=STATE_TIMEOUT)
    assert_cancelled(sim)


@pytest.mark.parametrize(
    ("path", "body", "first"),
    [
        pytest.param("/v1/query/stream", {"question": QUESTION}, b"event: sources", id="query-stream"),
        pytest.param("/v1/chat/completions", completion(stream=True), b'"sources":', id="completions-stream"),
    ],
)
def test_a_client_leaving_a_stream_mid_answer_cancels_the_model_stream(
    rag: AgenticRAG,
    server: ServerThread,
    sim: Any,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    body: dict[str, Any],
    first: bytes,
) -> None:
    # Without the rewrite, the only model call is the answer's stream, which starts after the sources event.
    monkeypatch.setattr(
        rag, "retrieval_config", dataclasses.replace(rag.retrieval_config, use_query_rewriting=False)
    )
    sim.configure(chat_ms=LATENCY_MS)
    with open_request(server, path, body) as client:
        read_until(client, first)
        sim.wait_for("chat", in_flight=1, timeout=STATE_TIMEOUT)
    assert_cancelled(sim)


def read_response(client: socket.socket) -> tuple[bytes, bytes]:
    """One whole response with a Content-Length: (status line, body)."""
    received = read_until(client, b"\r\n\r\n")
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += client.recv(65536)
    return head.split(b"\r\n", 1)[0], body


def test_requests_that_complete_on_a_kept_alive_connection_are_not_cancelled(
    server: ServerThread, sim: Any
) -> None:
    # After a response the server reports the end of the exchange to the watcher as a disconnect: it must not
    # cancel anything, and the next request on the same connection is served as usual.
    host = server.url.removeprefix("http://")
    with open_request(server, "/v1/query", {"question": QUESTION}) as client:
        status, body = read_response(client)
        assert status == b"HTTP/1.1 200 OK" and json.loads(body)["answer"]
        client.sendall(f"GET /v1/stats HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        status, body = read_response(client)
        assert status == b"HTTP/1.1 200 OK" and json.loads(body)["chunks"] > 0
    assert sim.stats()["chat"]["responses_ok"] == 2  # the rewrite and the answer, both completed


def test_a_delete_whose_client_leaves_still_finishes(
    rag: AgenticRAG, server: ServerThread, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A delete cut short would leave half a document and a stale listing: it runs to its end, client or not.
    loop = server.loop
    assert loop is not None
    source = "note-to-delete"
    report = asyncio.run_coroutine_threadsafe(rag.index_texts_async(["a note"], sources=[source]), loop)
    assert report.result(STATE_TIMEOUT).ok
    real_delete, gate, deleting = rag.vector_store.delete_async, asyncio.Event(), threading.Event()

    async def held_delete(*args: Any, **kwargs: Any) -> int:
        deleting.set()
        await gate.wait()
        return await real_delete(*args, **kwargs)

    monkeypatch.setattr(rag.vector_store, "delete_async", held_delete)
    with caplog.at_level(logging.DEBUG, logger="mini.server"):
        with open_request(server, f"/v1/documents/{source}", None, method="DELETE"):
            assert deleting.wait(STATE_TIMEOUT)
        wait_until(lambda: "the client left" in caplog.text, "the request was not cancelled")
    loop.call_soon_threadsafe(gate.set)  # only now, after the request was cancelled, may the delete go on

    def listed() -> set[str]:
        documents = httpx.get(server.url + "/v1/documents", timeout=30).json()["documents"]
        return {d["source"] for d in documents}

    wait_until(lambda: source not in listed(), "the delete was abandoned with its client")


# -- the middleware alone (in-process ASGI, no server) -----------------------------------------------------------


class Client:
    """An ASGI server's side of one request: `receive` hands out what the test puts in `inbox`."""

    def __init__(self, *messages: dict[str, Any]) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for message in messages:
            self.inbox.put_nowait(message)
        self.sent: list[dict[str, Any]] = []
        self.taken = asyncio.Event()  # set when a message has been handed out

    async def receive(self) -> dict[str, Any]:
        message = await self.inbox.get()
        self.taken.set()
        return message

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def leave(self) -> None:
        self.inbox.put_nowait({"type": "http.disconnect"})


def scope(body: bytes = b"") -> dict[str, Any]:
    headers = [(b"content-length", str(len(body)).encode())] if body else []
    return {"type": "http", "method": "POST" if body else "GET", "path": "/x", "headers": headers}


RESPONSE = [
    {"type": "http.response.start", "status": 200, "headers": []},
    {"type": "http.response.body", "body": b"ok"},
]


async def test_a_disconnect_after_the_body_cancels_the_app_and_ends_quietly() -> None:
    working, cancelled, done = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert await receive() == {"type": "http.request", "body": b"{}", "more_body": False}
        working.set()
        try:
            await done.wait()  # the route's work, which only a cancellation ends here
        except asyncio.CancelledError:
            cancelled.set()
            raise

    client = Client({"type": "http.request", "body": b"{}", "more_body": False})
    request = asyncio.ensure_future(CancelOnDisconnect(app)(scope(b"{}"), client.receive, client.send))
    await working.wait()
    client.leave()
    await request  # returns normally: the cancellation was the middleware's own
    assert cancelled.is_set() and not request.cancelled()
    assert request.cancelling() == 0  # nothing left pending on the server's task


async def test_a_body_less_request_still_reads_its_empty_body_and_then_the_disconnect() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert await receive() == {"type": "http.request", "body": b"", "more_body": False}
        for message in RESPONSE:
            await send(message)
        assert await receive() == {"type": "http.disconnect"}  # after the response: as the server says

    client = Client({"type": "http.request", "body": b"", "more_body": False})

    async def send(message: dict[str, Any]) -> None:
        await client.send(message)
        if message is RESPONSE[-1]:
            client.leave()  # as uvicorn does: once the response is complete, receive() says "disconnect"

    await CancelOnDisconnect(app)(scope(), client.receive, send)
    assert client.sent == RESPONSE


async def test_a_disconnect_after_the_response_cancels_nothing() -> None:
    responded, later = asyncio.Event(), asyncio.Event()
    finished = False

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal finished
        for message in RESPONSE:
            await send(message)
        responded.set()
        await later.wait()  # work after the response (a background task) is not the client's to cancel
        finished = True

    client = Client({"type": "http.request", "body": b"", "more_body": False})
    request = asyncio.ensure_future(CancelOnDisconnect(app)(scope(), client.receive, client.send))
    await responded.wait()
    client.taken.clear()
    client.leave()
    await client.taken.wait()  # the watcher took the disconnect, and decided in that same step
    later.set()
    await request
    assert finished


async def test_a_cancellation_from_elsewhere_is_not_swallowed() -> None:
    working = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        working.set()
        await asyncio.Event().wait()

    client = Client({"type": "http.request", "body": b"{}", "more_body": False})
    request = asyncio.ensure_future(CancelOnDisconnect(app)(scope(b"{}"), client.receive, client.send))
    await working.wait()
    request.cancel()  # the server shutting down, say
    with pytest.raises(asyncio.CancelledError):
        await request
