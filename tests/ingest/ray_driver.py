"""The Ray driver of tests/ingest/test_ray.py, run as its own process (`python ray_driver.py ADDRESS WORKDIR`).

Why a subprocess: Ray's driver starts threads and signal handlers and keeps global state; in its own process
none of it lives in a pytest-xdist worker (which execnet drives). This script connects to the test's cluster,
ingests one corpus locally, on Ray, again on Ray (all skipped), and on Ray while a worker running a task is
SIGKILLed, then prints one JSON object the test asserts on. Not collected by pytest (no `test_` prefix).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from mini import EmbeddingModel, VectorStore
from mini.ingest.pipeline import Ingestor
from mini.ingest.ray_executor import RayExecutor
from mini.testing.corpus import write_corpus
from mini.testing.services import wait_for_cpus

FILES = 100  # enough for several tasks in flight on two one-CPU nodes (the kill needs one running)


def _running_task_pids() -> list[int]:
    """Ray worker processes running one of our tasks right now: Ray titles a worker `ray::<function>` while it
    runs a task (`ray::IDLE` between tasks)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::_read_group"):
                pids.append(int(entry.name))
        except OSError:  # the process ended while we looked
            continue
    return pids


async def _kill_a_running_task(run: asyncio.Task[Any]) -> int | None:
    """SIGKILLs the first worker process seen running a task of `run` (the worker dies mid-task, as on a
    lost machine); None if the run ended before any task was seen running."""
    while not run.done():
        pids = await asyncio.to_thread(_running_task_pids)
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            return pids[0]
        await asyncio.sleep(0.005)
    return None


class _NoModelOnWorkers(RayExecutor):
    """Tasks whose workers cannot load the model (a directory that does not exist there): every task fails
    as a whole, which Ray does not retry (an application error, not a lost worker)."""

    async def _for_workers(self, settings: Any) -> Any:
        return dataclasses.replace(await super()._for_workers(settings), model_path="/nonexistent/model")


async def _ingest(address: str, workdir: Path) -> dict[str, Any]:
    docs = workdir / "docs"
    write_corpus(docs, FILES, chars=1500)
    (docs / "broken.pdf").write_bytes(b"not a pdf")  # fails alone, in the report, on both paths
    model = EmbeddingModel("local:all-MiniLM-L6-v2-int8")
    local_store = VectorStore(str(workdir / "local"), collection_name="docs")
    ray_store = VectorStore(str(workdir / "ray"), collection_name="docs")
    killed_store = VectorStore(str(workdir / "killed"), collection_name="docs")
    executor = RayExecutor(address)
    try:
        local = await Ingestor(local_store, model).run([docs])
        on_ray = await Ingestor(ray_store, model, executor=executor).run([docs])
        again = await Ingestor(ray_store, model, executor=executor).run([docs])
        # A worker killed mid-task: Ray runs the task again elsewhere (tasks write nothing), then a re-run.
        run = asyncio.create_task(Ingestor(killed_store, model, executor=executor).run([docs]))
        killed_pid = await _kill_a_running_task(run)
        killed = await run
        after_kill = await Ingestor(killed_store, model, executor=executor).run([docs])
        broken_store = VectorStore(str(workdir / "broken"), collection_name="docs")
        broken_executor = _NoModelOnWorkers(address)
        try:
            broken = await Ingestor(broken_store, model, executor=broken_executor).run([docs])
        finally:
            await broken_executor.aclose()
    finally:
        await executor.aclose()
        await model.aclose()

    def summary(report: Any) -> dict[str, Any]:
        return {
            "files_added": report.files_added,
            "files_failed": report.files_failed,
            "files_skipped": report.files_skipped,
            "chunks_added": report.chunks_added,
            "chunks_embedded": report.chunks_embedded,
            "failures": [[str(f.path), f.reason, f.error_type] for f in report.failures],
            "total_ms": report.timings_ms["total"],
        }

    remote = await _ingest_remote(docs, workdir, executor_address=address)
    return {
        **remote,
        "local": summary(local),
        "ray": summary(on_ray),
        "again": summary(again),
        "killed_pid": killed_pid,
        "killed": summary(killed),
        "after_kill": summary(after_kill),
        "killed_ids": sorted(r.id for r in await killed_store.backend.get()),
        "broken": summary(broken),
        "broken_rows": await broken_store.backend.count(),
        "local_ids": sorted(r.id for r in await local_store.backend.get()),
        "ray_ids": sorted(r.id for r in await ray_store.backend.get()),
    }


REMOTE_CAP = 4  # the simulated provider refuses (429) a request past this many in flight


async def _ingest_remote(docs: Path, workdir: Path, *, executor_address: str) -> dict[str, Any]:
    """A remote embedding API (the simulator over HTTP) locally and on Ray: on Ray the tasks read, parse and
    chunk, and the driver embeds under its limiter, the one limit for the whole cluster."""
    from mini.testing.sim.launcher import SimServer

    with SimServer(max_in_flight=REMOTE_CAP, embed_ms=5) as sim:
        model = EmbeddingModel(
            "openai:sim-embed",
            base_url=sim.base_url,
            api_key="sim",
            dimension=384,
            max_concurrency=REMOTE_CAP,
        )
        local_store = VectorStore(str(workdir / "remote-local"), collection_name="docs")
        ray_store = VectorStore(str(workdir / "remote-ray"), collection_name="docs")
        executor = RayExecutor(executor_address)
        try:
            local = await Ingestor(local_store, model).run([docs])
            on_ray = await Ingestor(ray_store, model, executor=executor).run([docs])
        finally:
            await executor.aclose()
            await model.aclose()
        totals = sim.stats()["total"]
    return {
        "remote_counts": [[r.files_added, r.chunks_added, r.files_failed] for r in (local, on_ray)],
        "remote_same_ids": sorted(r.id for r in await local_store.backend.get())
        == sorted(r.id for r in await ray_store.backend.get()),
        "remote_peak": totals["peak_in_flight"],
        "remote_429": totals["rate_limited"],
    }


def main() -> None:
    import ray

    address, workdir = sys.argv[1], Path(sys.argv[2])
    ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        wait_for_cpus(ray, 2)  # the worker node joined
        result = asyncio.run(_ingest(address, workdir))
    finally:
        ray.shutdown()
    print(json.dumps(result))  # the last line of stdout: Ray and the model may log above it


if __name__ == "__main__":
    main()
