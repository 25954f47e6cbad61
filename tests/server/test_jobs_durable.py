"""Ingestion jobs survive the server: states in SQLite, interrupted jobs reported and resumable, orphaned uploads
swept at start-up, and no internals in a job's error."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest

from mini import AgenticRAG, EmbeddingModel, VectorStore
from mini.errors import AuthenticationError, ConfigurationError
from mini.ingest.report import IngestProgress, IngestReport
from mini.server import ServerSettings, create_app
from mini.server.errors import public_error
from mini.server.job_store import DB_NAME, Lease, UploadSpool, db_path, open_job_store
from mini.server.jobs import Job, JobManager
from mini.testing.server_thread import ServerThread
from tests.query.conftest import SIM_KEY
from tests.server.test_documents import NOTES, SECRET, upload, wait_for

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="owner leases need flock")
# A store with no local directory (a Qdrant or Milvus server): its jobs database goes to the data directory.
NO_LOCAL_STORE = cast(VectorStore, SimpleNamespace(uri=None))


Serve = Callable[..., AbstractContextManager[httpx.Client]]


@pytest.fixture
def serve(sim: Any, monkeypatch: pytest.MonkeyPatch) -> Serve:
    """`serve(store_dir, **settings)`: one server lifetime (startup to shutdown); a second one is a restart.

    The app makes its rag from the environment, as `mini serve` does, so it closes it only after its jobs
    have stopped (a test closing a rag of its own would fail the running jobs first). `rag=` serves a given
    one instead, closed while the server still runs: for a server that runs no job."""

    @contextmanager
    def run(store_dir: Path, *, rag: AgenticRAG | None = None, **settings: Any) -> Iterator[httpx.Client]:
        for name, value in {
            "MINI_URI": str(store_dir),
            "MINI_COLLECTION": "sim",
            "MINI_EMBEDDING_MODEL": "openai:sim-embed",
            "OPENAI_BASE_URL": sim.base_url,
            "OPENAI_API_KEY": SIM_KEY,
        }.items():
            monkeypatch.setenv(name, value)
        with ServerThread(create_app(rag, settings=ServerSettings(**settings))) as server:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                yield client
            if rag is not None:
                assert server.loop is not None
                asyncio.run_coroutine_threadsafe(rag.aclose(), server.loop).result(timeout=10)

    return run


def reader_rag(store_dir: Path) -> AgenticRAG:
    """A rag for a server that only reads jobs: its embeddings go to a closed port, so its warm-up fails at
    once instead of waiting on a slowed simulator."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    return AgenticRAG(
        VectorStore(str(store_dir), collection_name="sim"),
        EmbeddingModel("openai:sim-embed", base_url=url, api_key=SIM_KEY, dimension=384, max_retries=0),
    )


def job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def stored_ids(store_dir: Path) -> list[str]:
    store = VectorStore(str(store_dir), collection_name="sim")
    try:
        return [record.id for record in store.get()]
    finally:
        store.close()


@pytest.fixture
def spool_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary directory the servers of this test put their upload spool in."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def test_a_finished_job_is_read_after_a_restart(serve: Serve, sim: Any, tmp_path: Path) -> None:
    texts = {"texts": [{"text": NOTES, "source": "ferry"}, {"text": SECRET, "source": "quasar"}]}
    with serve(tmp_path) as client:
        done = wait_for(client, client.post("/v1/documents", json=texts))
        assert done["status"] == "done", done
    assert (tmp_path / DB_NAME).is_file()  # by default, inside the store's directory

    with serve(tmp_path) as client:
        again = job(client, done["job_id"])
    assert again == done  # status, progress and the whole report
    assert again["report"]["files_added"] == 2


def test_a_live_servers_running_job_is_left_alone_and_a_stopped_one_is_interrupted(
    serve: Serve, sim: Any, tmp_path: Path
) -> None:
    jobs_db = str(tmp_path / "jobs.sqlite3")
    texts = {"texts": [{"text": NOTES, "source": "ferry"}]}
    with serve(tmp_path / "store", jobs_db=jobs_db) as first:
        sim.configure(embed_ms=30_000)
        job_id = first.post("/v1/documents", json=texts).json()["job_id"]
        sim.wait_for("embeddings", in_flight=1, timeout=30)  # the job is mid-run, waiting on its embedding
        # A second server starting on the same database sees a live owner: the job is not interrupted, and
        # its state is readable there too.
        with serve(tmp_path / "other", rag=reader_rag(tmp_path / "other"), jobs_db=jobs_db) as second:
            assert job(second, job_id)["status"] == "running"
        assert job(first, job_id)["status"] == "running"
    # The first server stopped with the job unfinished: it recorded the job as interrupted.
    sim.wait_for("embeddings", in_flight=0, timeout=30)  # stopping the job ended its embedding request
    sim.configure(embed_ms=0)
    with serve(tmp_path / "store", jobs_db=jobs_db) as client:
        stopped = job(client, job_id)
        assert stopped["status"] == "failed" and stopped["error"]["type"] == "interrupted", stopped
        resumed = wait_for(client, client.post("/v1/documents", json=texts))
        assert resumed["status"] == "done" and resumed["report"]["files_added"] == 1, resumed


CHILD = """
import sys
from mini import AgenticRAG, EmbeddingModel, VectorStore
from mini.server import ServerSettings, create_app
from mini.server.errors import public_error
from mini.testing.server_thread import ServerThread

store, jobs_db, base_url, key = sys.argv[1:5]
rag = AgenticRAG(
    VectorStore(store, collection_name="sim"),
    EmbeddingModel("openai:sim-embed", base_url=base_url, api_key=key, dimension=384),
)
with ServerThread(create_app(rag, settings=ServerSettings(jobs_db=jobs_db))) as server:
    print(server.url, flush=True)
    sys.stdin.readline()  # killed before this returns
"""


@pytest.mark.slow
def test_a_killed_servers_job_is_interrupted_its_uploads_swept_and_resubmitting_resumes_it(
    serve: Serve, sim: Any, tmp_path: Path, spool_tmp: Path
) -> None:
    store_dir, jobs_db = tmp_path / "store", tmp_path / "jobs.sqlite3"
    files = (("ferry.md", NOTES.encode()), ("quasar.md", SECRET.encode()))
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(store_dir), str(jobs_db), sim.base_url, SIM_KEY],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(spool_tmp)},
    )
    try:
        assert child.stdout is not None
        url = child.stdout.readline().strip()
        assert url.startswith("http://"), "the child server did not start"
        with httpx.Client(base_url=url, timeout=30) as client:
            first = wait_for(client, upload(client, files[0]))  # stored before the crash
            assert first["report"]["files_added"] == 1, first
            sim.configure(embed_ms=30_000)
            killed_id = upload(client, *files).json()["job_id"]  # ferry.md unchanged, quasar.md to embed
            sim.wait_for("embeddings", in_flight=1, timeout=30)
            assert job(client, killed_id)["status"] == "running"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        for pipe in (child.stdin, child.stdout):
            if pipe is not None:
                pipe.close()
    sim.configure(embed_ms=0)
    sim.wait_for("embeddings", in_flight=0, timeout=30)
    # The killed server's upload spool, with the job's files.
    [left] = [d for d in UploadSpool.default_root().iterdir() if d.is_dir()]
    assert sorted(p.name for p in next(left.iterdir()).iterdir()) == ["0000.upload", "0001.upload"]

    with serve(store_dir, jobs_db=str(jobs_db)) as client:
        assert not left.exists() and not left.with_suffix(".lock").exists()  # swept at start-up
        assert job(client, first["job_id"])["status"] == "done"
        interrupted = job(client, killed_id)
        assert interrupted["status"] == "failed", interrupted
        assert interrupted["error"]["type"] == "interrupted"
        assert "send the same request again" in interrupted["error"]["message"]

        resumed = wait_for(client, upload(client, *files))
        assert resumed["status"] == "done", resumed
        report = resumed["report"]
        assert (report["files_skipped"], report["files_added"], report["files_failed"]) == (1, 1, 0)
    ids = stored_ids(store_dir)
    assert len(ids) == len(set(ids))  # no chunk twice
    assert len(ids) == first["report"]["chunks_added"] + report["chunks_added"]  # and every chunk of both


def test_orphaned_upload_dirs_are_removed_at_startup_and_a_live_servers_are_kept(
    serve: Serve, sim: Any, tmp_path: Path, spool_tmp: Path
) -> None:
    root = UploadSpool.default_root()
    root.mkdir(mode=0o700)
    dead = root / ("0" * 32)  # a lease file nobody holds: its process is gone
    (dead / "job-x").mkdir(parents=True)
    (dead / "job-x" / "0000.upload").write_bytes(b"left by a killed server")
    dead.with_suffix(".lock").touch()
    lost = root / ("1" * 32)  # a directory whose lease is gone too
    lost.mkdir()
    live = root / ("2" * 32)
    lease = Lease(live.with_suffix(".lock"))  # held by this process: a live server's
    lease.acquire()
    (live / "job-y").mkdir(parents=True)
    (live / "job-y" / "0000.upload").write_bytes(b"still being ingested")
    try:
        with serve(tmp_path / "store") as client:
            assert not dead.exists() and not dead.with_suffix(".lock").exists()
            assert not lost.exists()
            assert (live / "job-y" / "0000.upload").read_bytes() == b"still being ingested"
            # The new server's own spool works as before.
            assert wait_for(client, upload(client, ("ferry.md", NOTES.encode())))["status"] == "done"
    finally:
        lease.release()
    assert sorted(p.name for p in root.iterdir()) == [live.name]  # ours went with the server; live untouched


async def test_a_dead_owners_row_is_marked_interrupted_and_a_live_ones_is_not(tmp_path: Path) -> None:
    path = str(tmp_path / "jobs.sqlite3")
    store = NO_LOCAL_STORE
    state = {
        "status": "running",
        "session_id": None,
        "created_at": 1.0,
        "progress": {"files_done": 3},
    }
    dead = await open_job_store(path, store, owner="d" * 32, ttl_s=3600)
    live = await open_job_store(path, store, owner="a" * 32, ttl_s=3600)
    assert dead is not None and live is not None
    dead.save_soon({**state, "job_id": "1" * 32})
    live.save_soon({**state, "job_id": "2" * 32})
    await dead.aclose()  # its lease is released as by a dying process
    # ... but its row still says "running", as a killed process leaves it.
    assert (await live.load("1" * 32, ttl_s=3600) or {})["status"] == "running"

    restarted = await open_job_store(path, store, owner="c" * 32, ttl_s=3600)
    assert restarted is not None
    marked = await restarted.load("1" * 32, ttl_s=3600)
    assert marked is not None and marked["status"] == "failed"
    assert marked["error"]["type"] == "interrupted" and marked["progress"] == {"files_done": 3}
    assert (await restarted.load("2" * 32, ttl_s=3600) or {})["status"] == "running"  # owner alive
    # A finished row is final: a late write from its old owner cannot revive it.
    await live.save({**state, "job_id": "1" * 32}, finished_at=None, ttl_s=3600)
    assert (await restarted.load("1" * 32, ttl_s=3600) or {})["status"] == "failed"
    # The TTL still applies: a row finished longer ago than it is forgotten.
    assert await restarted.load("1" * 32, ttl_s=0) is None
    await live.aclose()
    await restarted.aclose()


async def test_progress_writes_are_throttled_and_the_final_state_is_complete(tmp_path: Path) -> None:
    store = await open_job_store(
        str(tmp_path / "jobs.sqlite3"),
        NO_LOCAL_STORE,
        owner="e" * 32,
        ttl_s=3600,
    )
    assert store is not None
    jobs = JobManager(max_concurrent=1, ttl_s=3600, store=store, progress_interval_s=3600)
    reported, release = asyncio.Event(), asyncio.Event()

    async def work(job: Job) -> IngestReport:
        for done in range(1, 501):
            job.on_progress(IngestProgress(500, done, done, done, done, done, 0))
        reported.set()
        await release.wait()
        return IngestReport(files_seen=500, files_added=500)

    job = jobs.submit(work)
    await jobs.recorded(job)
    assert job.task is not None
    await asyncio.wait([job.task, asyncio.ensure_future(reported.wait())], return_when="FIRST_COMPLETED")
    assert reported.is_set(), job.error
    assert job.progress["files_done"] == 500
    row = await store.load(job.id, ttl_s=3600)
    assert row is not None and row["status"] == "running"
    assert row["progress"]["files_done"] == 1  # one write in the interval, not 500
    release.set()
    await job.task
    row = await store.load(job.id, ttl_s=3600)
    assert row is not None and row["status"] == "done"
    assert row["progress"]["files_done"] == 500 and row["report"]["files_added"] == 500
    await jobs.aclose()


def test_a_failed_jobs_error_carries_no_internals(serve: Serve, sim: Any, tmp_path: Path) -> None:
    sim.configure(api_key="another-key")  # the server's provider credentials are wrong: the job fails
    host = httpx.URL(sim.base_url).netloc.decode()
    with serve(tmp_path) as client:
        failed = wait_for(client, client.post("/v1/documents", json={"texts": [{"text": NOTES}]}))
    assert failed["status"] == "failed", failed
    assert failed["error"]["type"] == "provider_rejected"
    # The fixed sentence for its type; the provider's own text, its request id and address stay in the log.
    assert failed["error"]["message"] == public_error(AuthenticationError("x", status_code=401))[2]
    # Without the job id: a random hex id may hold "401".
    shown = str({key: value for key, value in failed.items() if key != "job_id"})
    for internal in (host, "401", "sim-embed", "req_sim", "API key"):
        assert internal not in shown
    with serve(tmp_path) as client:
        assert job(client, failed["job_id"])["error"] == failed["error"]  # the stored copy too


def test_the_jobs_database_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lance = VectorStore(str(tmp_path / "store"), collection_name="sim")
    assert db_path(None, lance) == tmp_path.resolve() / "store" / DB_NAME
    assert db_path(str(tmp_path / "x.db"), lance) == tmp_path.resolve() / "x.db"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert db_path(None, NO_LOCAL_STORE) == tmp_path.resolve() / "data" / "mini" / "jobs.sqlite3"


async def test_an_unusable_jobs_database_is_a_clear_error_when_named_else_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigurationError, match="MINI_JOBS_DB"):
        await open_job_store(str(blocker / "jobs.db"), NO_LOCAL_STORE, owner="f" * 32, ttl_s=1)
    lance = VectorStore(str(blocker / "store"), collection_name="sim")  # its directory cannot be made
    assert await open_job_store(None, lance, owner="f" * 32, ttl_s=1) is None
    assert "jobs will not survive a restart" in caplog.text
