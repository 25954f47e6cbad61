"""Concurrent writers on one store (issue 18, defect 2): the writer lock (in this process and, on LanceDB,
across processes), commit-conflict retries, and ingestions racing on the same files, which store each chunk
exactly once and report truly. Real components: LanceDB on disk, simulated embeddings over HTTP, `mini ingest`
processes, and a helper process that holds the store's lock file."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mini import EmbeddingModel, VectorStore
from mini.errors import StoreError
from mini.ingest.pipeline import Ingestor
from mini.ingest.report import IngestReport
from mini.stores._common import WriterLock
from mini.stores.base import Record
from mini.stores.lancedb import LanceDBBackend
from mini.stores.lancedb.commits import commit, is_commit_conflict

MINI = Path(sys.executable).with_name("mini")


def notes(folder: Path, count: int, version: str = "") -> Path:
    """`count` one-chunk text files."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"note{i:03d}.txt").write_text(
            f"Note {i}{version}: the ferry number {i} leaves at {i} o'clock."
        )
    return folder


def ingestor(sim: Any, store: Path | VectorStore) -> Ingestor:
    """An ingestor on `store`: a directory (its own store object, as another process would have) or a shared
    store object (as the server's jobs share one)."""
    model = EmbeddingModel("openai:sim-embed", base_url=sim.base_url, api_key="sim", dimension=384)
    vectors = store if isinstance(store, VectorStore) else VectorStore(str(store), collection_name="t")
    return Ingestor(vectors, model)


async def race(
    sim: Any, store: Path, corpus: Path, writers: int = 2, *, shared: bool = False
) -> list[IngestReport]:
    one_store = VectorStore(str(store), collection_name="t") if shared else None
    ingestors = [ingestor(sim, one_store or store) for _ in range(writers)]
    try:
        return list(await asyncio.gather(*(one.run([corpus]) for one in ingestors)))
    finally:
        for one in ingestors:
            await one.store.aclose()
            await one.embedding_model.aclose()


def stored_ids(store: Path, collection: str = "t") -> collections.Counter[str]:
    vectors = VectorStore(str(store), collection_name=collection)
    try:
        return collections.Counter(row.id for row in vectors.get())
    finally:
        vectors.close()


@pytest.mark.parametrize("shared", [False, True], ids=["own-store-objects", "one-store-object"])
async def test_two_ingestors_racing_on_the_same_files_store_each_chunk_once(
    sim: Any, tmp_path: Path, shared: bool
) -> None:
    corpus = notes(tmp_path / "docs", 40)
    store = tmp_path / "store"

    reports = await race(sim, store, corpus, shared=shared)

    ids = stored_ids(store)
    assert len(ids) == 40 and max(ids.values()) == 1, ids.most_common(3)
    # Each file was added by exactly one of them; to the other it was already there (unchanged).
    for report in reports:
        assert report.ok and report.files_updated == 0, report
        assert report.files_added + report.files_skipped == 40
        assert report.chunks_added + report.chunks_unchanged == 40
    assert sum(r.files_added for r in reports) == 40
    assert sum(r.chunks_added for r in reports) == 40


async def test_two_ingestors_racing_on_changed_files_replace_them_once(sim: Any, tmp_path: Path) -> None:
    corpus = notes(tmp_path / "docs", 30)
    store = tmp_path / "store"
    await race(sim, store, corpus, writers=1)
    old = set(stored_ids(store))
    notes(corpus, 30, version=" (revised)")

    reports = await race(sim, store, corpus, writers=3)

    ids = stored_ids(store)
    assert len(ids) == 30 and max(ids.values()) == 1 and not set(ids) & old
    for report in reports:
        assert report.ok and report.files_added == 0, report
        assert report.files_updated + report.files_skipped == 30
    # The old version's rows went once, replaced once; the other writers found the new version in place.
    assert sum(r.files_updated for r in reports) == 30
    assert sum(r.chunks_removed for r in reports) == 30
    assert sum(r.chunks_added for r in reports) == 30


def test_two_mini_ingest_processes_on_the_same_files_store_each_chunk_once(sim: Any, tmp_path: Path) -> None:
    corpus = notes(tmp_path / "docs", 30)
    store = str(tmp_path / "store")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "MINI_URI"))}
    env.update(OPENAI_BASE_URL=sim.base_url, OPENAI_API_KEY="sim")
    command = [
        str(MINI),
        "ingest",
        str(corpus),
        "--uri",
        store,
        "--embedding-model",
        "openai:sim-embed",
        "--json",
    ]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]

    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
    reports = [json.loads(stdout) for stdout, _ in outputs]
    ids = stored_ids(Path(store), "docs")
    assert len(ids) == 30 and max(ids.values()) == 1, ids.most_common(3)
    assert sum(r["files_added"] for r in reports) == 30, reports
    assert all(r["files_added"] + r["files_skipped"] == 30 for r in reports), reports


# -- the writer lock -----------------------------------------------------------------------------------------

CONFLICT = "lance error: Retryable commit conflict for version 22: This Rewrite transaction was preempted"
HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()
"""


def row(i: int) -> Record:
    return Record(f"r{i}", [1.0, 0.0, 0.0, float(i)], f"text {i}", {"source": "s"})


@pytest.fixture
def other_process_holding(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock file of `tmp_path/lance`, collection "c", until it reads a line."""
    lock_file = tmp_path / "lance" / "c.lance.lock"
    lock_file.parent.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    yield holder
    holder.kill()
    holder.wait()


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (on the loop) until `condition()` holds; fail naming `what` after 30 s."""
    for _ in range(3_000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting until {what}")


def release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.write("go\n")
    holder.stdin.close()
    holder.wait(timeout=10)


async def test_a_write_waits_while_another_process_holds_the_store_lock(
    tmp_path: Path, other_process_holding: subprocess.Popen[str]
) -> None:
    backend = LanceDBBackend(str(tmp_path / "lance"), collection_name="c")
    write = asyncio.ensure_future(backend.upsert([row(1)]))
    # A negative observation: the write is parked on the lock (it needs ~10 ms when the lock is free).
    done, _ = await asyncio.wait([write], timeout=0.5)
    assert not done
    release(other_process_holding)
    await asyncio.wait_for(write, timeout=30)
    assert await backend.count() == 1
    await backend.aclose()


async def test_a_cancelled_waiter_writes_nothing_and_leaves_the_lock_free(
    tmp_path: Path, other_process_holding: subprocess.Popen[str]
) -> None:
    backend = LanceDBBackend(str(tmp_path / "lance"), collection_name="c")
    waiting = asyncio.ensure_future(backend.upsert([row(2)]))
    done, _ = await asyncio.wait([waiting], timeout=0.2)
    assert not done
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release(other_process_holding)
    await asyncio.wait_for(backend.upsert([row(3)]), timeout=30)  # the lock is free again
    assert sorted(r.id for r in await backend.get()) == ["r3"]
    await backend.aclose()


async def test_writes_inside_a_held_section_do_not_wait_for_it(tmp_path: Path) -> None:
    backend = LanceDBBackend(str(tmp_path / "lance"), collection_name="c")
    other = LanceDBBackend(str(tmp_path / "lance"), collection_name="c")

    async def section() -> None:
        async with backend.exclusive():
            await backend.upsert([row(1)])
            await backend.replace([row(2)], scope=_source("s"))
            await backend.delete(ids=["r2"])
            await backend.upsert([row(3)])

    await asyncio.wait_for(asyncio.gather(section(), other.upsert([row(4)])), timeout=30)
    assert sorted(r.id for r in await other.get()) == ["r3", "r4"]
    for one in (backend, other):
        await one.aclose()


def _source(name: str) -> Any:
    from mini.stores.filters import parse_filter

    return parse_filter({"source": name})


async def test_the_lock_is_one_per_store_and_collection(tmp_path: Path) -> None:
    a, b = WriterLock(str(tmp_path), "c"), WriterLock(str(tmp_path), "c")
    other = WriterLock(str(tmp_path), "d")
    release_a = await a.acquire()
    taking_b = asyncio.ensure_future(b.acquire())
    release_other = await asyncio.wait_for(other.acquire(), timeout=30)  # another collection: not blocked
    done, _ = await asyncio.wait([taking_b], timeout=0.2)
    assert not done
    release_a()
    release_a()  # a second release is ignored
    (await asyncio.wait_for(taking_b, timeout=30))()
    release_other()


# -- commit conflicts ----------------------------------------------------------------------------------------


async def test_commit_conflicts_are_retried_until_the_write_goes_through(tmp_path: Path) -> None:
    attempts: list[int] = []

    async def write() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError(CONFLICT)
        return "written"

    assert await commit(WriterLock(str(tmp_path), "c"), "upsert", write) == "written"
    assert len(attempts) == 3


async def test_other_failures_are_not_retried(tmp_path: Path) -> None:
    attempts: list[int] = []

    async def write() -> None:
        attempts.append(1)
        raise OSError("No space left on device")

    with pytest.raises(StoreError, match="LanceDB upsert failed: No space left"):
        await commit(WriterLock(str(tmp_path), "c"), "upsert", write)
    assert len(attempts) == 1
    assert is_commit_conflict(RuntimeError(CONFLICT)) and not is_commit_conflict(RuntimeError("bad SQL"))


class _ConflictingTable:
    """A real table whose optimize() always loses its commit race (as to a writer that takes no lock)."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self.optimizes = 0

    async def optimize(self, **_: Any) -> None:
        self.optimizes += 1
        raise RuntimeError(CONFLICT)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)


async def test_an_optimize_that_keeps_conflicting_is_skipped_not_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = LanceDBBackend(str(tmp_path / "lance"), collection_name="c")
    await backend.upsert([row(1)])
    conflicting = _ConflictingTable(backend._table)
    backend._table = conflicting  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger="mini.stores"):
        await backend.optimize()
    assert conflicting.optimizes > 1  # retried first
    assert "optimize of 'c' skipped" in caplog.text
    assert await backend.count() == 1
    await backend.aclose()


async def test_a_lock_file_that_cannot_be_made_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "lance" / "c.lance.lock").mkdir(parents=True)  # in the way (root ignores read-only modes)
    backend = LanceDBBackend(str(tmp_path / "lance"), collection_name="c")
    with pytest.raises(StoreError, match=r"cannot lock .*c\.lance\.lock for writing"):
        await backend.upsert([row(1)])
    await backend.aclose()


async def test_a_section_opening_a_new_table_does_not_deadlock_with_a_writer_creating_it(
    tmp_path: Path,
) -> None:
    backend = LanceDBBackend(str(tmp_path / "lance"), collection_name="c")
    entered, proceed = asyncio.Event(), asyncio.Event()

    async def section() -> None:
        async with backend.exclusive():
            entered.set()
            await proceed.wait()
            # The section's first write opens (creates) the table: it must not wait for the parked writer,
            # which used to hold the table-opening lock while it waited for this section.
            await backend.upsert([row(1)])

    in_section = asyncio.ensure_future(section())
    await entered.wait()
    creating = asyncio.ensure_future(backend.upsert([row(2)]))  # a writer outside the section
    await until(lambda: backend.writes._shared.gates.get().locked(), "the writer is parked on the lock")
    proceed.set()
    await asyncio.wait_for(asyncio.gather(in_section, creating), timeout=30)
    assert sorted(r.id for r in await backend.get()) == ["r1", "r2"]
    await backend.aclose()


async def test_a_failed_compaction_does_not_fail_the_files_just_committed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from mini.ingest.state import Committer
    from mini.ingest.units import Unit

    class FailingOptimize(LanceDBBackend):
        async def optimize(self) -> None:
            raise StoreError(f"LanceDB optimize failed: {CONFLICT}")

    backend = FailingOptimize(str(tmp_path / "lance"), collection_name="c")
    committer = Committer(backend, fatal=lambda _: False, timed=lambda *_: None, compact_every=1)
    unit = Unit("/docs/a.txt", "file", fingerprint="e.c.x", records=[row(1)])
    with caplog.at_level(logging.WARNING, logger="mini.ingest"):
        assert await committer.write([unit]) == [None]  # written, and reported so
    assert "compaction skipped" in caplog.text
    assert await backend.count() == 1
    await backend.aclose()
