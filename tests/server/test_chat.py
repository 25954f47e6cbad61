"""`POST /v1/chat/stream` and the session routes, on a real uvicorn server with the simulated provider."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from mini import AgenticRAG, EmbeddingModel, VectorStore
from mini._sse import decode
from mini.server import ServerSettings, create_app
from mini.server.sessions import SessionStore
from mini.testing.server_thread import ServerThread
from tests.clock import ManualClock, wait_until
from tests.conftest import SAMPLE_CORPUS
from tests.query.conftest import SIM_KEY, make_rag

Event = tuple[str, Any]


def offline_rag(sim: Any, store_dir: Path) -> AgenticRAG:
    """Embeddings from the simulator, no LLM: extractive answers, no condensing, no rewriting."""
    return AgenticRAG(
        VectorStore(str(store_dir), collection_name="sim"),
        EmbeddingModel("openai:sim-embed", base_url=sim.base_url, api_key=SIM_KEY, dimension=384),
    )


@contextmanager
def serve(rag: AgenticRAG, **settings: Any) -> Iterator[httpx.Client]:
    with ServerThread(create_app(rag, settings=ServerSettings(**settings))) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client
        # The rag's HTTP clients belong to the server's loop: close them there, before it stops.
        assert server.loop is not None
        asyncio.run_coroutine_threadsafe(rag.aclose(), server.loop).result(timeout=10)


def chat(client: httpx.Client, message: str, session_id: str | None = None, **extra: Any) -> list[Event]:
    body = {"message": message, **extra}
    if session_id is not None:
        body["session_id"] = session_id
    events: list[Event] = []
    with client.stream("POST", "/v1/chat/stream", json=body) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        events.extend((event.event or "message", event.json()) for event in decode(response.iter_bytes()))
    return events


def done_of(events: list[Event]) -> dict[str, Any]:
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done", events
    data: dict[str, Any] = events[-1][1]
    return data


def assert_event_order(events: list[Event]) -> None:
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "sources"
    assert kinds[-1] == "done"
    assert kinds.count("sources") == 1 and kinds.count("done") == 1
    middle = kinds[1:-1]
    assert middle and middle[0] == "token"
    assert set(middle) <= {"token", "citation"}


def chat_requests(sim: Any) -> int:
    return int(sim.stats()["chat"]["requests"])


@pytest.fixture
def indexed(sim: Any, tmp_path: Path) -> Path:
    """The sample corpus indexed (embeddings only) in `tmp_path`, for rags made on that directory."""
    rag = offline_rag(sim, tmp_path)
    report = rag.index_documents([SAMPLE_CORPUS])
    assert report.ok, report.failures
    rag.close()
    return tmp_path


def test_follow_up_is_condensed_with_the_history(sim: Any, indexed: Path) -> None:
    with serve(make_rag(sim, indexed)) as client:
        sim.reset()
        first = chat(client, "What goes in the blue bin?", "s1")
        assert_event_order(first)
        done = done_of(first)
        assert done["session_id"] == "s1"
        assert done["metadata"]["condense"] == "skipped: no history"
        without_history = chat_requests(sim)  # rewrite + answer
        assert without_history >= 2

        standalone = "When is paper and cardboard in the blue bin collected?"
        sim.script([{"content": standalone}])  # the next chat request is the condense call
        second = chat(client, "And when is it collected?", "s1")
        assert_event_order(second)
        done = done_of(second)
        assert chat_requests(sim) - without_history == without_history + 1  # one more: the condense call
        assert done["session_id"] == "s1"
        assert done["metadata"]["condense"] == "ok"
        assert done["metadata"]["condensed_question"] == standalone
        assert done["rewritten_queries"][0] == standalone
        assert "condense" in done["metadata"]["timings_ms"]
        sources = second[0][1]
        assert sources[0]["source"].endswith("recycling_schedule.pdf")

        history = client.get("/v1/sessions/s1")
        assert history.status_code == 200
        turns = history.json()["turns"]
        assert [t["question"] for t in turns] == ["What goes in the blue bin?", "And when is it collected?"]
        assert turns[1]["answer"] == done["answer"]

        # An unusable condense reply: the message is searched as given, with a warning.
        sim.script([{"content": "   "}])
        third = chat(client, "What about glass?", "s1")
        done = done_of(third)
        assert done["metadata"]["condense"] == "failed"
        assert any("condensing" in w for w in done["metadata"]["warnings"])
        assert done["rewritten_queries"][0] == "What about glass?"

        assert client.delete("/v1/sessions/s1").status_code == 204
        gone = client.get("/v1/sessions/s1")
        assert gone.status_code == 404 and gone.json()["type"] == "not_found"
        assert client.delete("/v1/sessions/s1").status_code == 404


def test_offline_chat_needs_no_llm_and_generates_session_ids(sim: Any, indexed: Path) -> None:
    with serve(offline_rag(sim, indexed)) as client:
        sim.reset()
        first = chat(client, "What goes in the blue bin?")
        assert_event_order(first)
        session_id = done_of(first)["session_id"]
        assert session_id
        second = chat(client, "And when is it collected?", session_id)
        assert_event_order(second)
        done = done_of(second)
        assert done["metadata"]["condense"] == "skipped: no LLM configured"
        assert done["metadata"]["answer_type"] == "extractive"
        assert done["answer"]
        assert chat_requests(sim) == 0
        turns = client.get(f"/v1/sessions/{session_id}").json()["turns"]
        assert len(turns) == 2


def test_failed_turn_is_not_added_to_the_history(sim: Any, tmp_path: Path) -> None:
    with serve(make_rag(sim, tmp_path)) as client:
        sim.configure(api_key="another-key")  # every provider call is now refused (401, not retried)
        events = chat(client, "What goes in the blue bin?", "s-err")
        assert [kind for kind, _ in events] == ["error"]
        # Our type and a sentence for the user; the provider's words (and its address) are the log's.
        assert events[0][1] == {
            "type": "provider_rejected",
            "message": "the model provider refused the server's request (see the server log)",
        }
        assert client.get("/v1/sessions/s-err").json()["turns"] == []


def test_invalid_requests_are_refused_before_streaming(sim: Any, tmp_path: Path) -> None:
    with serve(offline_rag(sim, tmp_path)) as client:
        bad_id = client.post("/v1/chat/stream", json={"message": "hi", "session_id": "../etc"})
        assert bad_id.status_code == 422 and bad_id.json()["type"] == "invalid_request"
        empty = client.post("/v1/chat/stream", json={"message": "   "})
        assert empty.status_code == 422 and empty.json()["type"] == "invalid_input"
        assert client.get("/v1/sessions/" + "x" * 129).status_code == 422


def test_sessions_are_bounded_least_recently_used_first(sim: Any, tmp_path: Path) -> None:
    with serve(offline_rag(sim, tmp_path), max_sessions=2, max_history_turns=1) as client:
        done_of(chat(client, "first question", "a"))
        done_of(chat(client, "second question", "b"))
        done_of(chat(client, "another question", "a"))  # "a" is now the most recently used
        done_of(chat(client, "third question", "c"))  # evicts "b"
        assert client.get("/v1/sessions/b").status_code == 404
        turns = client.get("/v1/sessions/a").json()["turns"]
        assert [t["question"] for t in turns] == ["another question"]  # history bounded to 1 turn
        assert client.get("/v1/sessions/c").status_code == 200
        stats = client.get("/v1/stats").json()["sessions"]
        assert stats["active"] == 2 and stats["evicted"] == 1


def test_sessions_expire_after_the_ttl(sim: Any, tmp_path: Path) -> None:
    rag = offline_rag(sim, tmp_path)
    app = create_app(rag, settings=ServerSettings(session_ttl_s=0.3))
    clock = ManualClock()
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        # Expiry follows the store's clock, which only this test moves: however slow the machine, nothing
        # expires before `advance` and the sweeper (every ttl/2 of real time) ends both right after it.
        sessions: SessionStore = app.state.sessions
        sessions.clock = clock
        done_of(chat(client, "a question", "short"))
        done_of(chat(client, "a question", "swept"))
        assert client.get("/v1/sessions/short").status_code == 200
        clock.advance(0.2)
        assert client.get("/v1/sessions/short").status_code == 200  # within the TTL; "short" used again
        clock.advance(0.2)  # "swept" idle for 0.4 s, "short" for 0.2 s
        wait_until(lambda: sessions.expired == 1, "the sweeper did not end the idle session")
        assert client.get("/v1/sessions/swept").status_code == 404
        clock.advance(0.4)
        # Nobody touched "short" since: the periodic sweep ends it without an access.
        wait_until(lambda: sessions.expired == 2, "the sweeper did not end the second session")
        stats = client.get("/v1/stats").json()["sessions"]
        assert stats["active"] == 0 and stats["expired"] == 2
        assert client.get("/v1/sessions/short").status_code == 404
        # The same id starts afresh.
        assert done_of(chat(client, "again", "short"))["session_id"] == "short"
        assert len(client.get("/v1/sessions/short").json()["turns"]) == 1
        assert server.loop is not None
        asyncio.run_coroutine_threadsafe(rag.aclose(), server.loop).result(timeout=10)


async def test_a_session_expires_on_access_or_sweep_by_the_stores_clock() -> None:
    clock = ManualClock()
    store = SessionStore(max_sessions=4, ttl_s=10, max_turns=2, clock=clock)
    kept, _idle, busy = (store.get_or_create(name) for name in ("kept", "idle", "busy"))
    busy.active_jobs = 1  # an ingestion job is writing into it: never expired under it
    clock.advance(6)
    assert store.get("kept") is kept
    clock.advance(6)  # "idle" and "busy" idle for 12 s, "kept" for 6 s
    assert store.sweep() == 1
    assert store.get("idle") is None and store.get("busy") is busy and store.get("kept") is kept
    clock.advance(10.5)
    assert store.get("kept") is None  # expired: ended on access, without a sweep
    assert (store.expired, len(store)) == (2, 1)
    await store.aclose()
