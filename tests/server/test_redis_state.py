"""Sessions and ingestion jobs shared through Redis (MINI_REDIS_URL): a real redis-server on a loopback port, real
uvicorn servers, the simulated provider. Two apps on one Redis stand for two replicas."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mini import VectorStore, _redis
from mini.server.redis_state import SESSIONS, RedisJobStore, RedisSessionStore
from mini.server.sessions import Session, collection_for
from mini.testing.contracts import rows
from mini.testing.services import free_port
from tests.clock import wait_until
from tests.server.test_chat import chat, done_of, offline_rag, serve

# `redis_url` (tests/conftest.py): the session's redis-server, flushed for each test.


@pytest.fixture
async def client_url(redis_url: str) -> AsyncIterator[str]:
    yield redis_url
    await _redis.close_client(redis_url)


def test_a_follow_up_on_the_other_replica_uses_the_history(sim: Any, tmp_path: Path, redis_url: str) -> None:
    with (
        serve(offline_rag(sim, tmp_path / "a"), redis_url=redis_url) as one,
        serve(offline_rag(sim, tmp_path / "b"), redis_url=redis_url) as other,
    ):
        first = done_of(chat(one, "What is the budget?"))
        session_id = first["session_id"]
        done_of(chat(other, "And the deadline?", session_id))
        history = one.get(f"/v1/sessions/{session_id}").json()
        assert [t["question"] for t in history["turns"]] == ["What is the budget?", "And the deadline?"]
        assert other.delete(f"/v1/sessions/{session_id}").status_code == 204
        assert one.get(f"/v1/sessions/{session_id}").status_code == 404


async def test_sessions_are_bounded_and_expire_cluster_wide(client_url: str) -> None:
    sessions = RedisSessionStore(client_url, None, max_sessions=2, ttl_s=60, max_turns=2)
    replica = RedisSessionStore(client_url, None, max_sessions=2, ttl_s=60, max_turns=2)
    try:
        a = await sessions.open("a")
        for n in range(3):
            await sessions.add_turn(a, f"q{n}", f"a{n}")
        assert [t.question for t in (await replica.find("a") or a).turns] == [
            "q1",
            "q2",
        ]  # the last max_turns
        await sessions.open("b")
        await replica.find("a")  # "a" used again on the other replica: "b" is now the least recently used
        await sessions.open("c")
        assert sessions.evicted == 1
        assert await replica.find("b") is None and await replica.find("a") is not None
        # "a" idle past the TTL (its last use moved back in Redis rather than waiting): gone on every replica.
        redis = _redis.redis_client(client_url)
        await redis.zadd(SESSIONS, {"a": time.time() - 61})
        assert await replica.sweep_async() == 1
        assert await sessions.find("a") is None
        assert await replica.find("c") is not None
    finally:
        await sessions.aclose()
        await replica.aclose()


async def test_a_session_ended_elsewhere_is_ended_here_too_when_a_job_here_wrote_to_it(
    client_url: str, tmp_path: Path
) -> None:
    """Replica B runs an upload job of a session that replica A deletes before the job's first write: A finds
    no collection to drop, then B's job makes it. B's next sweep cancels its jobs of that session (its
    `on_close` hooks) and drops the collection: no orphan documents."""
    base = VectorStore(str(tmp_path / "store"), collection_name="docs")
    a, b = (RedisSessionStore(client_url, base, max_sessions=8, ttl_s=60, max_turns=2) for _ in range(2))
    closed_on_b: list[str] = []

    async def cancel_jobs(session: Session) -> None:
        closed_on_b.append(session.id)

    b.on_close.append(cancel_jobs)
    try:
        session = await b.open("s1", documents=True)
        assert session.store is not None
        await b.open("s2", documents=True)  # another session with documents on B, still alive
        assert await a.delete("s1")
        await session.store.backend.upsert(rows(2))  # B's job, still running, writes its first rows
        assert await session.store.backend.count() == 2
        await a.sweep_async()  # A no longer holds s1: nothing to do there
        assert closed_on_b == []
        await b.sweep_async()
        assert closed_on_b == ["s1"]
        assert b.get("s1") is None and b.get("s2") is not None
        orphan = VectorStore(str(tmp_path / "store"), collection_name=collection_for("docs", "s1"))
        assert await orphan.backend.count() == 0
        await orphan.aclose()
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_job_of_a_dead_replica_reads_failed_with_the_reason(client_url: str) -> None:
    dead, alive, reader = (RedisJobStore(client_url, owner=name) for name in ("dead", "alive", "reader"))
    for store in (dead, alive, reader):
        await store.open(ttl_s=60)
    try:
        state: dict[str, Any] = {
            "job_id": "",
            "status": "running",
            "session_id": None,
            "created_at": 1.0,
            "progress": {},
        }
        for store, job_id in ((dead, "1" * 32), (alive, "2" * 32)):
            recording = store.save_soon({**state, "job_id": job_id})
            assert recording is not None
            await recording
        await dead.aclose()  # its heartbeat key goes, as it would expire after a kill -9
        found = await reader.load("1" * 32, ttl_s=60)
        assert found is not None and found["status"] == "failed"
        assert found["error"]["type"] == "interrupted" and "heartbeat" in found["error"]["message"]
        still = await reader.load("2" * 32, ttl_s=60)
        assert still is not None and still["status"] == "running"  # its owner is alive
    finally:
        for store in (alive, reader):
            await store.aclose()


def test_a_job_submitted_to_one_replica_is_followed_on_the_other(
    sim: Any, tmp_path: Path, redis_url: str
) -> None:
    with (
        serve(offline_rag(sim, tmp_path / "a"), redis_url=redis_url) as one,
        serve(offline_rag(sim, tmp_path / "a"), redis_url=redis_url) as other,
    ):
        accepted = one.post(
            "/v1/documents", json={"texts": [{"text": "The budget is 5 million euros.", "source": "memo"}]}
        )
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        wait_until(lambda: other.get(f"/v1/jobs/{job_id}").json()["status"] == "done", "the job to finish")
        assert other.get(f"/v1/jobs/{job_id}").json()["report"]["chunks_added"] >= 1


def test_redis_down_means_503_and_health_says_why(sim: Any, tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with serve(offline_rag(sim, tmp_path), redis_url=dead) as client:
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] == "degraded" and "Redis" in health.json()["reason"]
        for response in (
            client.post("/v1/chat/stream", json={"message": "hello"}),
            client.get("/v1/sessions/abc"),
            client.delete("/v1/sessions/abc"),
            # Not a 202 with an id no replica could ever report: the job is withdrawn.
            client.post(
                "/v1/documents", json={"texts": [{"text": "The budget is 5 million.", "source": "m"}]}
            ),
        ):
            assert response.status_code == 503, response.text
            assert response.json()["type"] == "unavailable"
