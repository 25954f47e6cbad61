"""The server end to end: a real uvicorn server on 127.0.0.1, httpx as the client, the simulated LLM behind it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mini import AgenticRAG
from mini._sse import decode
from mini.server import create_app
from mini.testing.server_thread import ServerThread
from tests.servers import indexed_rag, serve

QUESTION = "When is glass collected for recycling?"


def sse_events(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    """(event, data) pairs from an SSE response, as they arrive."""
    for event in decode(response.iter_bytes()):
        yield event.event or "message", event.json()


@pytest.fixture
def rag(sim: Any, tmp_path: Path) -> AgenticRAG:
    return indexed_rag(sim, tmp_path)


@pytest.fixture
def server(rag: AgenticRAG) -> Iterator[ServerThread]:
    with serve(rag, max_body_bytes=64 * 1024) as running:
        yield running


def test_query_returns_answer_sources_citations_and_timings(server: ServerThread) -> None:
    response = httpx.post(f"{server.url}/v1/query", json={"question": QUESTION}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"] and body["sources"] and body["citations"]
    assert [s["number"] for s in body["sources"]] == list(range(1, len(body["sources"]) + 1))
    cited = body["citations"][0]
    assert cited["source"] == body["sources"][cited["number"] - 1]["source"]
    assert body["timings_ms"]["total"] > 0 and "generate" in body["timings_ms"]


def test_stream_sends_sources_then_tokens_then_citations_then_done(server: ServerThread) -> None:
    with httpx.stream(
        "POST", f"{server.url}/v1/query/stream", json={"question": QUESTION}, timeout=30
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(response))
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "sources" and kinds[-1] == "done"
    assert "token" in kinds and "citation" in kinds
    assert kinds.index("citation") > kinds.index("token")  # a citation follows the tokens that complete it
    assert "error" not in kinds
    text = "".join(data["text"] for kind, data in events if kind == "token")
    done = events[-1][1]
    assert done["answer"] == text and done["citations"]
    assert done["citations"][0]["source"] in {hit["source"] for hit in events[0][1]}


def test_a_provider_failure_mid_request_is_an_error_event_or_502_never_an_answer(
    server: ServerThread, sim: Any
) -> None:
    sim.configure(error_fraction=1.0)
    with httpx.stream(
        "POST", f"{server.url}/v1/query/stream", json={"question": QUESTION}, timeout=30
    ) as response:
        events = list(sse_events(response))
    # Every request to the provider fails (the question's embedding first): an error event, no answer.
    assert [kind for kind, _ in events] == ["error"]
    assert events[-1][1] == {
        "type": "provider_error",
        "message": "the model provider failed (see the server log)",
    }
    failed = httpx.post(f"{server.url}/v1/query", json={"question": QUESTION}, timeout=30)
    assert failed.status_code == 502
    assert failed.json()["type"] == "provider_error" and "Traceback" not in failed.text


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"question": "   "}, "the question is empty"),
        ({"question": "x" * 5000}, "limit is 4000"),
        ({"question": 3}, "question"),
        ({}, "question"),
        ({"question": "ok", "top_k": 0}, "top_k"),
    ],
)
def test_bad_requests_are_422_with_a_message(
    server: ServerThread, body: dict[str, Any], expected: str
) -> None:
    for path in ("/v1/query", "/v1/query/stream"):
        response = httpx.post(f"{server.url}{path}", json=body, timeout=30)
        assert response.status_code == 422, (path, response.text)
        error = response.json()
        assert error["type"] in {"invalid_input", "invalid_request"} and expected in error["message"]


def test_malformed_json_unknown_routes_and_large_bodies(server: ServerThread) -> None:
    bad = httpx.post(
        f"{server.url}/v1/query",
        content=b"{not json",
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert bad.status_code == 422 and bad.json()["type"] == "invalid_request"
    missing = httpx.get(f"{server.url}/v1/nope", timeout=30)
    assert missing.status_code == 404 and missing.json()["type"] == "not_found"
    large = httpx.post(f"{server.url}/v1/query", json={"question": "x" * 70_000}, timeout=30)
    assert large.status_code == 413 and large.json()["type"] == "too_large"

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit still applies while reading
        yield b'{"question": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    streamed = httpx.post(
        f"{server.url}/v1/query", content=chunked(), headers={"content-type": "application/json"}, timeout=30
    )
    assert streamed.status_code == 413


def test_api_keys_guard_every_route_but_health(rag: AgenticRAG) -> None:
    with serve(rag, api_keys="k1, k2") as server:
        assert httpx.get(f"{server.url}/health").status_code == 200
        for method, path in (("POST", "/v1/query"), ("POST", "/v1/query/stream"), ("GET", "/v1/stats")):
            denied = httpx.request(method, f"{server.url}{path}", json={"question": QUESTION}, timeout=30)
            assert denied.status_code == 401, path
            assert denied.json() == {"type": "unauthorized", "message": "missing or invalid API key"}
            wrong = httpx.request(
                method,
                f"{server.url}{path}",
                json={"question": QUESTION},
                headers={"authorization": "Bearer k3"},
            )
            assert wrong.status_code == 401
        ok = httpx.post(
            f"{server.url}/v1/query",
            json={"question": QUESTION},
            headers={"authorization": "Bearer k2"},
            timeout=30,
        )
        assert ok.status_code == 200
        assert httpx.get(f"{server.url}/v1/stats", headers={"x-api-key": "k1"}).status_code == 200


def test_cors_is_off_by_default_and_follows_the_configured_origins(rag: AgenticRAG) -> None:
    preflight = {"origin": "https://app.example", "access-control-request-method": "POST"}
    with ServerThread(create_app(rag)) as server:
        response = httpx.options(f"{server.url}/v1/query", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
    with serve(rag, cors_origins="https://app.example") as server:
        response = httpx.options(f"{server.url}/v1/query", headers=preflight)
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        other = httpx.options(
            f"{server.url}/v1/query", headers={**preflight, "origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers


def test_stats_report_the_store_models_and_the_servers_loop_lag(server: ServerThread) -> None:
    stats = httpx.get(f"{server.url}/v1/stats", timeout=30).json()
    assert stats["chunks"] > 0 and stats["documents"] == 8  # the sample corpus: 8 files
    assert stats["embedding_model"] == "openai:sim-embed" and stats["llm"].endswith("sim-chat")
    assert stats["loop_lag"]["samples"] >= 0 and stats["loop_lag"]["p99_ms"] >= 0
    docs = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    assert "/v1/query/stream" in docs["paths"] and "/v1/query" in docs["paths"]


def test_a_client_disconnect_closes_the_upstream_llm_stream_within_100_ms(
    server: ServerThread, sim: Any
) -> None:
    # The answer's second token comes after 10 minutes, so the upstream stream cannot end by itself during the
    # test: only the cancellation path can close it. The rewrite (the first chat request, not streamed) gets
    # an empty scripted reply, which does not wait for tokens.
    sim.configure(chat_ms=0, token_ms=600_000)
    sim.script([{"content": ""}])
    url = f"{server.url}/v1/query/stream"
    with httpx.stream("POST", url, json={"question": QUESTION}, timeout=30) as response:
        # Held, not dropped after the break: a half-read generator that is garbage-collected closes the
        # connection (httpcore closes it on GeneratorExit), which would disconnect before we mean to.
        events = sse_events(response)
        for kind, _ in events:
            if kind == "token":
                break
        counters = sim.stats()["chat"]
        assert (counters["stream_requests"], counters["in_flight"]) == (1, 1)  # the answer stream is open
        closed = time.monotonic()  # system-wide on Linux: comparable with the simulator's clock
        response.close()
    sim.wait_for("chat", in_flight=0, timeout=60)  # a deadline only for a broken cancellation path
    [(gone_at, endpoint)] = sim.clients_gone()
    assert endpoint == "chat"
    assert gone_at - closed < 0.1, f"the upstream stream stayed open {(gone_at - closed) * 1000:.1f} ms"
