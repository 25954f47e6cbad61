"""`POST /v1/documents` and `GET /v1/jobs/{id}`: uploads, texts, server paths, session-scoped documents."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from mini import AgenticRAG, EmbeddingModel, VectorStore
from mini._sse import decode
from mini.server import ServerSettings, create_app
from mini.server.sessions import collection_for
from mini.testing.server_thread import ServerThread
from tests.clock import wait_until
from tests.query.conftest import SIM_KEY

NOTES = (
    "# Zephyr ferry\n\nThe Zephyr ferry to Osprey Rock leaves the north pier every 40 minutes "
    "from 6 a.m. to 11 p.m. A return ticket costs 9 dollars.\n"
)
SECRET = (
    "# Project Quasar\n\nThe launch code of project Quasar is kestrel-4471, kept by the harbour master.\n"
)


@contextmanager
def serve(store_dir: Path, sim: Any, **settings: Any) -> Iterator[httpx.Client]:
    """A server over an offline rag (simulated embeddings, extractive answers) in `store_dir`."""
    rag = AgenticRAG(
        VectorStore(str(store_dir), collection_name="sim"),
        EmbeddingModel("openai:sim-embed", base_url=sim.base_url, api_key=SIM_KEY, dimension=384),
    )
    with ServerThread(create_app(rag, settings=ServerSettings(**settings))) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client
        assert server.loop is not None  # the rag's HTTP clients belong to the server's loop
        asyncio.run_coroutine_threadsafe(rag.aclose(), server.loop).result(timeout=10)


def wait_for(client: httpx.Client, accepted: httpx.Response, timeout: float = 30.0) -> dict[str, Any]:
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert body["status"] in ("queued", "running")
    assert accepted.headers["location"] == f"/v1/jobs/{body['job_id']}"
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{body['job_id']}").json()
        if job["status"] in ("done", "failed"):
            return job
        assert set(job["progress"]) == {
            "files_total",
            "files_done",
            "chunks_total",
            "chunks_embedded",
            "chunks_written",
        }
        assert time.monotonic() < deadline, job
        time.sleep(0.02)


def upload(client: httpx.Client, *files: tuple[str, bytes], session_id: str | None = None) -> httpx.Response:
    data = {"session_id": session_id} if session_id else None
    return client.post("/v1/documents", files=[("files", (n, c)) for n, c in files], data=data)


def sources_of_query(client: httpx.Client, question: str) -> list[str]:
    response = client.post("/v1/query", json={"question": question})
    assert response.status_code == 200, response.text
    return [hit["source"] for hit in response.json()["sources"]]


def sources_of_chat(client: httpx.Client, message: str, session_id: str) -> list[str]:
    body = {"message": message, "session_id": session_id}
    with client.stream("POST", "/v1/chat/stream", json=body) as response:
        events = list(decode(response.iter_bytes()))
    assert events[0].event == "sources" and events[-1].event == "done", events
    return [hit["source"] for hit in events[0].json()]


def test_upload_is_indexed_found_and_skipped_when_sent_again(sim: Any, tmp_path: Path) -> None:
    with serve(tmp_path, sim) as client:
        job = wait_for(client, upload(client, ("ferry.md", NOTES.encode())))
        assert job["status"] == "done", job
        assert job["report"]["files_added"] == 1 and job["report"]["failures"] == []
        assert job["progress"]["files_done"] == job["progress"]["files_total"] == 1
        assert job["progress"]["chunks_written"] >= 1
        assert "upload:global/ferry.md" in sources_of_query(client, "When does the Zephyr ferry leave?")

        again = wait_for(client, upload(client, ("ferry.md", NOTES.encode())))
        assert again["report"]["files_skipped"] == 1 and again["report"]["files_added"] == 0


def test_json_texts_are_indexed_in_a_job(sim: Any, tmp_path: Path) -> None:
    with serve(tmp_path, sim) as client:
        texts = [
            {"text": "The Osprey Rock lighthouse was built in 1871 of granite.", "source": "memo-1"},
            {"text": "Kayak rentals at the marina cost 15 dollars an hour.", "metadata": {"team": "marina"}},
        ]
        job = wait_for(client, client.post("/v1/documents", json={"texts": texts}))
        assert job["status"] == "done", job
        assert job["report"]["files_added"] == 2
        assert "memo-1" in sources_of_query(client, "When was the Osprey Rock lighthouse built?")
        nothing = client.post("/v1/documents", json={})
        assert nothing.status_code == 422 and nothing.json()["type"] == "invalid_input"


def test_session_documents_are_visible_only_in_their_session(sim: Any, tmp_path: Path) -> None:
    with serve(tmp_path, sim) as client:
        wait_for(client, upload(client, ("ferry.md", NOTES.encode())))  # a global document
        job = wait_for(client, upload(client, ("quasar.md", SECRET.encode()), session_id="alice"))
        assert job["status"] == "done" and job["session_id"] == "alice", job
        assert job["report"]["files_added"] == 1
        question = "What is the launch code of project Quasar?"

        in_session = sources_of_chat(client, question, "alice")
        assert in_session[0] == "upload:alice/quasar.md"
        assert "upload:global/ferry.md" in in_session  # the global collection is searched too
        assert "upload:alice/quasar.md" not in sources_of_query(client, question)
        assert "upload:alice/quasar.md" not in sources_of_chat(client, question, "bob")
        assert client.get("/v1/sessions/alice").json()["has_documents"] is True

        name = collection_for("sim", "alice")
        assert (tmp_path / f"{name}.lance").is_dir()
        assert client.delete("/v1/sessions/alice").status_code == 204
        assert not (tmp_path / f"{name}.lance").exists()  # the session's collection was dropped with it
        assert "upload:alice/quasar.md" not in sources_of_chat(client, question, "alice")


def test_a_bad_file_fails_alone_and_client_paths_are_only_labels(sim: Any, tmp_path: Path) -> None:
    with serve(tmp_path, sim) as client:
        job = wait_for(
            client,
            upload(
                client,
                ("../../etc/ferry.md", NOTES.encode()),
                ("broken.pdf", b"%PDF-1.7 this is not really a pdf"),
                ("tool.exe", b"MZ\x90\x00"),
            ),
        )
        assert job["status"] == "done", job
        report = job["report"]
        assert report["files_added"] == 1 and report["files_failed"] == 2
        failed = {f["path"]: f for f in report["failures"]}
        assert set(failed) == {"upload:global/broken.pdf", "upload:global/tool.exe"}
        assert "unsupported file type" in failed["upload:global/tool.exe"]["reason"]
        assert job["progress"]["files_done"] == job["progress"]["files_total"] == 3
        assert "upload:global/ferry.md" in sources_of_query(client, "When does the Zephyr ferry leave?")


def test_refusals_unknown_jobs_and_the_body_limit(sim: Any, tmp_path: Path) -> None:
    with serve(tmp_path, sim, max_body_bytes=20_000) as client:
        missing = client.get("/v1/jobs/0123456789abcdef")
        assert missing.status_code == 404 and missing.json()["type"] == "not_found"

        paths = client.post("/v1/documents", json={"paths": [str(tmp_path)]})
        assert paths.status_code == 403 and paths.json()["type"] == "forbidden"

        not_a_url = client.post("/v1/documents", json={"urls": ["/etc/passwd"]})
        assert not_a_url.status_code == 422

        too_big = upload(client, ("big.md", b"word " * 6_000))
        assert too_big.status_code == 413 and too_big.json()["type"] == "too_large"

        no_files = client.post("/v1/documents", files={"other": ("a.md", b"x")})
        assert no_files.status_code == 422
        assert (
            client.post("/v1/documents", content=b"x", headers={"content-type": "text/plain"}).status_code
            == 415
        )
        assert client.get("/v1/stats").json()["jobs"] == {"queued": 0, "running": 0, "done": 0, "failed": 0}


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_server_paths_must_resolve_inside_the_ingest_root(sim: Any, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "ferry.md").write_text(NOTES)
    outside = tmp_path / "outside.md"
    outside.write_text(SECRET)
    (root / "link.md").symlink_to(outside)
    (root / "mixed").mkdir()
    (root / "mixed" / "ok.md").write_text("Bicycles may be parked at the north pier racks.")
    (root / "mixed" / "escape.md").symlink_to(outside)

    with serve(tmp_path / "store", sim, ingest_root=str(root)) as client:
        job = wait_for(client, client.post("/v1/documents", json={"paths": ["docs/ferry.md"]}))
        assert job["status"] == "done" and job["report"]["files_added"] == 1, job

        for refused in ("../outside.md", str(outside), "link.md", "docs/../../outside.md"):
            response = client.post("/v1/documents", json={"paths": [refused]})
            assert response.status_code == 403, refused
            assert response.json()["type"] == "forbidden"

        # Walking a directory: a symlink inside it that leads out is listed as a failure, never read.
        job = wait_for(client, client.post("/v1/documents", json={"paths": ["mixed"]}))
        assert job["status"] == "done", job
        report = job["report"]
        assert report["files_added"] == 1 and report["files_failed"] == 1
        assert report["failures"][0]["path"].endswith("mixed/escape.md")
        assert "outside the ingest root" in report["failures"][0]["reason"]
        found = sources_of_query(client, "launch code of project Quasar")
        assert not any(s.endswith(("outside.md", "escape.md", "link.md")) for s in found), found


def test_jobs_queue_clean_up_expire_and_are_cancelled_on_shutdown(
    sim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = tmp_path / "tmp"  # the server's upload spool goes in here
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    rag = AgenticRAG(
        VectorStore(str(tmp_path / "store"), collection_name="sim"),
        EmbeddingModel("openai:sim-embed", base_url=sim.base_url, api_key=SIM_KEY, dimension=384),
    )
    app = create_app(rag, settings=ServerSettings(job_ttl_s=0.5, max_concurrent_jobs=1))
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        spool = app.state.upload_spool.dir
        assert spool.parent.parent == tmp
        done = wait_for(client, upload(client, ("ferry.md", NOTES.encode())))
        assert done["status"] == "done"
        # The job's upload directory goes in the job's cleanup, which runs just after its status says done.
        wait_until(lambda: list(spool.iterdir()) == [], "the job's upload directory is removed")
        time.sleep(0.6)  # a sleep only ever lasts longer: the job is past its 0.5 s TTL however loaded we are
        assert client.get(f"/v1/jobs/{done['job_id']}").status_code == 404  # forgotten after the TTL

        sim.configure(embed_ms=30_000)
        slow = upload(client, ("slow.md", b"The slow ferry leaves at dawn.")).json()["job_id"]
        waiting = upload(client, ("later.md", b"The late ferry leaves at dusk.")).json()["job_id"]
        wait_until(lambda: client.get(f"/v1/jobs/{slow}").json()["status"] == "running", "slow job running")
        assert client.get(f"/v1/jobs/{waiting}").json()["status"] == "queued"  # one job at a time
        assert client.get("/v1/stats").json()["jobs"]["running"] == 1
        stopping = time.monotonic()
    # The bound is the point: shutdown cancels the job instead of waiting for its 30 s embedding; 15 s of
    # margin holds on a loaded machine.
    assert time.monotonic() - stopping < 15
    for job_id in (slow, waiting):
        job = app.state.jobs.get(job_id)
        # Stopped by the shutdown, not by the client: sending the same request again resumes it.
        assert job.status == "failed" and job.error["type"] == "interrupted"
    assert list(spool.parent.iterdir()) == []  # stopped jobs removed their uploads, the server its spool


def test_the_server_refuses_to_fetch_loopback_urls_unless_allowed(tmp_path: Path, sim: Any) -> None:
    """SSRF: a client must not make the server fetch its own routes, the simulator's or anything else on loopback
    (literal, by name, or through a redirect); MINI_FETCH_ALLOW opens an address on purpose."""
    with serve(tmp_path / "refusing", sim) as client:
        own = f"{client.base_url}/health"
        by_name = own.replace("127.0.0.1", "localhost")
        sim_config = f"{sim.base_url}/config"
        job = wait_for(client, client.post("/v1/documents", json={"urls": [own, by_name, sim_config]}))
        assert job["status"] == "done", job
        report = job["report"]
        assert report["files_added"] == 0 and report["files_failed"] == 3, report
        for failure in report["failures"]:
            assert "refused" in failure["reason"] and "MINI_FETCH_ALLOW" in failure["reason"], failure
        assert client.get("/v1/stats").json()["chunks"] == 0
    with serve(tmp_path / "allowed", sim, fetch_allow="127.0.0.1") as client:
        job = wait_for(client, client.post("/v1/documents", json={"urls": [f"{client.base_url}/health"]}))
        assert job["report"]["files_added"] == 1, job


def test_a_malformed_fetch_allow_list_stops_the_start_up(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from mini.errors import ConfigurationError

    app = create_app(
        AgenticRAG(VectorStore(str(tmp_path))), settings=ServerSettings(fetch_allow="not-a-cidr/99")
    )
    with pytest.raises(ConfigurationError, match="not-a-cidr/99"), TestClient(app):
        pass
