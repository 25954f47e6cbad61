"""Two real `mini serve` processes on one redis-server, one simulated provider and one LanceDB directory: what a
load balancer in front of replicas relies on. Sessions, jobs and the provider's in-flight cap are the cluster's,
and a replica that dies takes only its own streams with it.

One replica reads `redis_url` from the environment, the other from the mini.toml in its working directory (the
two ways an operator configures it). Starting a pair costs ~2 s, so the three tests that leave both replicas up
share one pair (module scope, one xdist group); the kill test starts its own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mini import VectorStore
from mini._sse import SSEDecoder, decode
from mini.testing.services import free_port
from tests.clock import wait_until
from tests.conftest import SAMPLE_CORPUS, reset_sim
from tests.query.conftest import SIM_KEY, make_rag

MINI = Path(sys.executable).with_name("mini")
CAP = 16  # the provider's (the simulator's) in-flight limit in the load test

# The group keeps the module on one worker under `--dist loadgroup`; under `make test`'s default `--dist load`
# the marker is inert, and adjacent tests usually land in one chunk (if split, each worker starts its own pair).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("replicas")]


class Replica:
    """One `mini serve` subprocess on a free loopback port."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.name, self.process, self.url, self.log = name, process, url, log

    def client(self, **options: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **options)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown runs the lifespan's end
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _start(name: str, workdir: Path, store: Path, sim: Any, env: dict[str, str]) -> Replica:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [str(MINI), "serve", "--port", str(port), "--uri", str(store), "--collection", "sim"]
    command += ["--embedding-model", "openai:sim-embed", "--llm", "openai:sim-chat", "--no-rewrite"]
    log = workdir / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env={
                **os.environ,
                **env,
                "OPENAI_BASE_URL": sim.base_url,
                "OPENAI_API_KEY": SIM_KEY,
                "MINI_LLM_MAX_CONCURRENCY": str(CAP),
                "MINI_LLM_MAX_RETRIES": "4",
            },
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return Replica(name, process, f"http://127.0.0.1:{port}", log)


def _ready(replica: Replica) -> None:
    """Until /health answers (a start-up bound, not a timed assertion)."""
    deadline = time.monotonic() + 60
    with replica.client() as client:
        while True:
            assert replica.process.poll() is None, f"{replica.name} exited:\n{replica.log.read_text()}"
            with contextlib.suppress(httpx.TransportError):
                if client.get("/health").status_code == 200:
                    return
            assert time.monotonic() < deadline, f"{replica.name} not ready:\n{replica.log.read_text()}"
            time.sleep(0.05)


async def _index(sim: Any, store: Path) -> None:
    rag = make_rag(sim, store)
    try:
        report = await rag.index_documents_async([SAMPLE_CORPUS])
        assert report.ok, report.failures
    finally:
        await rag.aclose()


@contextlib.contextmanager
def _pair(sim: Any, workdir: Path, redis_url: str) -> Iterator[tuple[Replica, Replica]]:
    """Replicas `one` (MINI_REDIS_URL) and `other` (redis_url in its mini.toml) over the indexed sample corpus."""
    store = workdir / "store"
    asyncio.run(_index(sim, store))
    (workdir / "other").mkdir()
    (workdir / "other" / "mini.toml").write_text(f'redis_url = "{redis_url}"\n')
    pair = (
        _start("one", workdir / "one", store, sim, {"MINI_REDIS_URL": redis_url}),
        _start("other", workdir / "other", store, sim, {}),
    )
    try:
        for replica in pair:  # both start at once: the waits overlap
            _ready(replica)
        sim.reset()
        yield pair
    finally:
        for replica in pair:
            replica.stop()


@pytest.fixture(scope="module")
def shared_replicas(
    sim_server: Any, redis_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Replica, Replica]]:
    """One pair for the tests that leave both replicas up. Redis is emptied once, before the pair starts: a
    FLUSHALL while it runs would drop its job heartbeats (its running jobs would read `interrupted`), so these
    tests take `sim` but not `redis_url`, and assert on what they add, not on totals."""
    import redis

    with redis.Redis.from_url(redis_server, socket_timeout=5) as client:
        client.flushall()
    reset_sim(sim_server)
    with _pair(sim_server, tmp_path_factory.mktemp("replicas"), redis_server) as pair:
        yield pair


@pytest.fixture
def replicas(sim: Any, shared_replicas: tuple[Replica, Replica]) -> tuple[Replica, Replica]:
    """The module's pair, with the simulator reset for this test (`sim`)."""
    for replica in shared_replicas:
        assert replica.process.poll() is None, f"{replica.name} exited:\n{replica.log.read_text()}"
    return shared_replicas


@pytest.fixture
def own_replicas(sim: Any, tmp_path: Path, redis_url: str) -> Iterator[tuple[Replica, Replica]]:
    """A pair for this test alone (the kill test ends one of them)."""
    with _pair(sim, tmp_path, redis_url) as pair:
        yield pair


def _events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    assert response.status_code == 200, response.text
    return [(e.event or "message", e.json()) for e in decode(response.iter_bytes())]


def _chat(client: httpx.Client, message: str, session_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if session_id is not None:
        body["session_id"] = session_id
    with client.stream("POST", "/v1/chat/stream", json=body) as response:
        events = _events(response)
    assert events[-1][0] == "done", events
    return events[-1][1]


def test_a_follow_up_sent_to_the_other_replica_uses_the_history(replicas: tuple[Replica, Replica]) -> None:
    one, other = replicas
    with one.client() as a, other.client() as b:
        active_before = a.get("/v1/stats").json()["sessions"]["active"]
        first = _chat(a, "What is the budget?")
        assert "condensed_question" not in first["metadata"]  # no history yet: nothing to condense
        follow_up = _chat(b, "And when is it due?", first["session_id"])
        # Condensing runs only with earlier turns: the other replica read them from Redis.
        assert follow_up["session_id"] == first["session_id"] and follow_up["metadata"]["condensed_question"]
        turns = a.get(f"/v1/sessions/{first['session_id']}").json()["turns"]
        assert [t["question"] for t in turns] == ["What is the budget?", "And when is it due?"]
        # The cluster's count (ZCARD): one more, seen by the replica that did not open it too.
        assert a.get("/v1/stats").json()["sessions"]["active"] == active_before + 1
        assert b.get("/v1/stats").json()["sessions"]["active"] == active_before + 1


def test_a_job_submitted_to_one_replica_completes_on_the_others_get(
    replicas: tuple[Replica, Replica],
) -> None:
    one, other = replicas
    with one.client() as a, other.client() as b:
        accepted = a.post(
            "/v1/documents",
            json={"texts": [{"text": "The ferry leaves at 7 from pier 4.", "source": "memo"}]},
        )
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        wait_until(lambda: b.get(f"/v1/jobs/{job_id}").json()["status"] in ("done", "failed"), "the job")
        job = b.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "done" and job["report"]["chunks_added"] >= 1, job


async def test_the_providers_cap_holds_across_replicas(sim: Any, replicas: tuple[Replica, Replica]) -> None:
    """128 questions at once, half to each replica, each replica allowed CAP: together never above CAP."""
    sim.configure(max_in_flight=CAP, chat_ms=20, embed_ms=5, retry_after=0.05)
    limits = httpx.Limits(max_connections=64)
    async with (
        httpx.AsyncClient(base_url=replicas[0].url, timeout=60, limits=limits) as a,
        httpx.AsyncClient(base_url=replicas[1].url, timeout=60, limits=limits) as b,
    ):
        answers = [
            (a, b)[n % 2].post("/v1/query", json={"question": f"What is the budget? ({n})"})
            for n in range(128)
        ]
        statuses = [r.status_code for r in await asyncio.gather(*answers)]
    assert statuses == [200] * 128
    stats = sim.stats()
    assert stats["total"]["rate_limited"] == 0, stats  # the simulator refuses (429) any request above CAP
    assert stats["total"]["peak_in_flight"] <= CAP, stats
    assert stats["chat"]["responses_ok"] == 128, stats  # one answer each (query embeddings are batched)


async def test_killing_a_replica_mid_stream_fails_only_its_own_streams(
    sim: Any, own_replicas: tuple[Replica, Replica]
) -> None:
    """Four streams on each replica, all past their first token; `other` is SIGKILLed: its four break, and the
    four on `one` finish."""
    one, other = own_replicas
    sim.configure(token_ms=20)  # answers of a few hundred tokens: seconds of streaming, ended by the kill
    outcomes: dict[str, list[str]] = {"one": [], "other": []}

    async def stream(client: httpx.AsyncClient, name: str, started: asyncio.Event, n: int) -> None:
        kinds: list[str] = []
        try:
            async with client.stream("POST", "/v1/query/stream", json={"question": f"Budget? {n}"}) as resp:
                decoder = SSEDecoder()
                async for chunk in resp.aiter_bytes():
                    for event in decoder.feed(chunk):
                        kinds.append(event.event or "message")
                        if event.event == "token":
                            started.set()
            outcomes[name].append(kinds[-1] if kinds else "empty")
        except httpx.HTTPError:
            outcomes[name].append("broken")
        finally:
            started.set()  # a stream that failed before its first token must not hang the test

    async with (
        httpx.AsyncClient(base_url=one.url, timeout=60) as a,
        httpx.AsyncClient(base_url=other.url, timeout=60) as b,
    ):
        started = [asyncio.Event() for _ in range(8)]
        tasks = [
            asyncio.create_task(stream((a, b)[n % 2], ("one", "other")[n % 2], started[n], n))
            for n in range(8)
        ]
        await asyncio.gather(*(event.wait() for event in started))
        assert not outcomes["one"] and not outcomes["other"], outcomes  # all eight still streaming
        other.process.send_signal(signal.SIGKILL)
        await asyncio.gather(*tasks)
    assert outcomes["other"] == ["broken"] * 4, outcomes
    assert outcomes["one"] == ["done"] * 4, outcomes


async def test_a_killed_replicas_job_fails_with_the_reason_and_a_resubmit_adds_no_duplicates(
    sim: Any, own_replicas: tuple[Replica, Replica], redis_url: str, tmp_path: Path
) -> None:
    """A job running on `other` (held at its embedding request) when `other` is SIGKILLed: `one` reports it
    failed, type `interrupted`, once the dead replica's heartbeat is gone (the test deletes the key rather than
    waiting out its expiry); sending the same request to `one`, twice, stores each chunk once."""
    import json

    import redis

    one, other = own_replicas
    texts = {
        "texts": [
            {"text": f"Ferry {n} leaves pier {n} at {n} o'clock.", "source": f"ferry-{n}"} for n in range(3)
        ]
    }
    sim.configure(embed_ms=600_000)  # the job's embedding request waits until the kill
    with one.client() as a, other.client() as b:
        accepted = b.post("/v1/documents", json=texts)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        wait_until(lambda: sim.stats()["embeddings"]["in_flight"] >= 1, "the job's embedding request")
        other.process.send_signal(signal.SIGKILL)
        other.process.wait(timeout=30)
        with redis.Redis.from_url(redis_url, socket_timeout=5) as client:
            owner = json.loads(client.get(f"mini:job:{job_id}"))["owner"]
            assert client.delete(f"mini:jobs:alive:{owner}") == 1  # what its 15 s expiry would do
        job = a.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "failed" and job["error"]["type"] == "interrupted", job
        assert "send the same request again" in job["error"]["message"]

        sim.configure(embed_ms=0)
        for _ in range(2):  # resubmitted, then once more: content-hash ids, nothing stored twice
            again = a.post("/v1/documents", json=texts)
            assert again.status_code == 202, again.text
            again_id = again.json()["job_id"]
            wait_until(
                lambda job=again_id: a.get(f"/v1/jobs/{job}").json()["status"] in ("done", "failed"),
                "the job",
            )
            assert a.get(f"/v1/jobs/{again_id}").json()["status"] == "done"
    store = VectorStore(str(tmp_path / "store"), collection_name="sim")
    try:
        stored = [r for r in await store.backend.get() if r.metadata.get("source", "").startswith("ferry-")]
    finally:
        await store.aclose()
    assert sorted(r.metadata["source"] for r in stored) == ["ferry-0", "ferry-1", "ferry-2"]
