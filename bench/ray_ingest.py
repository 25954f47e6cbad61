"""Ingestion on a Ray cluster vs in one process: the same corpus, the same ids and counts, and what Ray costs.

    python bench/ray_ingest.py [--files 2000] [--chars 1500] [--no-write]

Starts a local cluster the way the issue and docs/scaling.md describe it (`ray start --head` plus one worker
node, one CPU each, on loopback), writes a corpus of `--files` text files, and indexes it with the default local
model (int8) into fresh embedded stores:
- **local**: `Ingestor` in this process (reading on threads, the model on every core);
- **Ray tasks**: `Ingestor(executor=RayExecutor(address))` (what `mini ingest --ray` runs);
- **Ray Data**: the same read hop (`ray_executor._read_group`: read, parse, chunk, embed) as a Ray Data
  `map_batches` over the file list, with no store, no skip check and no commit: a lower bound of what a Ray Data
  executor would take, to choose between the two;
- a re-run of the Ray tasks path on its store (everything skipped).
It checks the local and Ray stores hold the same chunk ids, and reports wall time, files/s, chunks/s, the
store's size on disk, and the sizing figures of docs/scaling.md. Writes its section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

try:  # `python bench/ray_ingest.py`; `python -m bench.ray_ingest` finds bench._common
    from _common import machine, run_writing
except ModuleNotFoundError:
    from bench._common import machine, run_writing

HEADING = "## Ingestion on a Ray cluster (issue 22)"


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


async def _ray_data(settings: Any, files: list[Path], group: int) -> tuple[float, int]:
    """The read hop over Ray Data: `map_batches` of `group` files per call; returns (seconds, chunks)."""
    import ray.data

    from mini.ingest.ray_executor import _read_group, _TaskFile

    def read_batch(batch: dict[str, Any]) -> dict[str, Any]:
        tasks = [_TaskFile(str(p), str(p), None, True) for p in batch["path"]]
        result = _read_group(settings, tasks)
        return {"chunks": [len(c) for c in result.chunks]}

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its progress report goes to stdout otherwise

    def consume() -> int:
        dataset = ray.data.from_items([{"path": str(p)} for p in files])
        out = dataset.map_batches(read_batch, batch_size=group, num_cpus=1)
        return sum(int(sum(b["chunks"])) for b in out.iter_batches(batch_size=None))

    started = time.perf_counter()
    chunks = await asyncio.to_thread(consume)
    return time.perf_counter() - started, chunks


async def main_async(args: argparse.Namespace) -> str:
    import ray

    from mini import EmbeddingModel, VectorStore
    from mini.ingest.pipeline import Ingestor
    from mini.ingest.ray_executor import RayExecutor
    from mini.testing.corpus import write_corpus
    from mini.testing.services import LocalRayCluster, wait_for_cpus

    work = Path(tempfile.mkdtemp(prefix="mini-ray-bench-"))
    with contextlib.ExitStack() as stack:
        files = write_corpus(work / "docs", args.files, chars=args.chars)
        model = EmbeddingModel("local:all-MiniLM-L6-v2-int8")
        await model.embed_async(["warm up: load the graph outside the timing"])

        started = time.perf_counter()
        local = await Ingestor(VectorStore(str(work / "local"), collection_name="docs"), model).run(
            [work / "docs"]
        )
        local_s = time.perf_counter() - started

        # Started after the local run, so that run does not share the cores with Ray's daemons.
        address = await asyncio.to_thread(stack.enter_context, LocalRayCluster(workers=1, cpus=1))
        await asyncio.to_thread(ray.init, address=address, log_to_driver=False, configure_logging=False)
        await asyncio.to_thread(wait_for_cpus, ray, 2)
        seen: list[Any] = []

        class Recording(RayExecutor):  # keeps the run's task settings for the Ray Data variant
            async def read_files(self, units: Any, settings: Any, *rest: Any) -> Any:
                seen.append(settings)
                return await super().read_files(units, settings, *rest)

        executor = Recording(address)
        # Warm the workers (each loads the model once per process) with a first small run, not timed.
        await Ingestor(VectorStore(str(work / "warm"), collection_name="docs"), model, executor=executor).run(
            files[:8]
        )
        ray_store = VectorStore(str(work / "ray"), collection_name="docs")
        started = time.perf_counter()
        on_ray = await Ingestor(ray_store, model, executor=executor).run([work / "docs"])
        ray_s = time.perf_counter() - started
        started = time.perf_counter()
        again = await Ingestor(ray_store, model, executor=executor).run([work / "docs"])
        again_s = time.perf_counter() - started
        data_s, data_chunks = await _ray_data(seen[-1], files, group=8)

        local_store = VectorStore(str(work / "local"), collection_name="docs")
        local_ids = sorted(r.id for r in await local_store.backend.get())
        ray_ids = sorted(r.id for r in await ray_store.backend.get())
        await executor.aclose()
        await model.aclose()
        ray.shutdown()
    same = local_ids == ray_ids and len(set(ray_ids)) == len(ray_ids)
    assert same, "the Ray store does not hold the local store's chunk ids"
    assert (on_ray.files_added, on_ray.chunks_added) == (local.files_added, local.chunks_added)
    assert data_chunks == local.chunks_added, (data_chunks, local.chunks_added)
    size_mb = _size_mb(work / "local")
    shutil.rmtree(work, ignore_errors=True)

    chunks = local.chunks_added
    cores = os.cpu_count() or 1

    def row(name: str, seconds: float, note: str) -> str:
        return (
            f"| {name} | {seconds:.1f} | {args.files / seconds:.1f} | {chunks / seconds:.0f} "
            f"| {seconds / local_s:.2f}x | {note} |"
        )

    per_core_hour = args.files / ray_s / 2 * 3600  # two one-CPU nodes
    return "\n".join(
        [
            HEADING,
            "",
            f"`python bench/ray_ingest.py --files {args.files}` · {machine()} Corpus: {args.files:,} text files of "
            f"~{args.chars} chars -> {chunks:,} chunks; model `local:all-MiniLM-L6-v2-int8`; cluster: `ray start "
            "--head` + one worker node, one CPU each, loopback; Ray workers warmed (model loaded) before timing.",
            "",
            "| path | wall s | files/s | chunks/s | vs local | notes |",
            "|---|---:|---:|---:|---:|---|",
            row(
                "local (one process, every core)",
                local_s,
                "reading on threads, model on every core, one commit stream",
            ),
            row("Ray tasks (`--ray`)", ray_s, "read/parse/chunk/embed in tasks, driver skips and commits"),
            row(
                "Ray Data `map_batches` (read hop only)",
                data_s,
                "no store, no skip check, no commit: a lower bound",
            ),
            row("Ray tasks, re-run", again_s, f"{again.files_skipped:,} skipped, {again.chunks_added} added"),
            "",
            f"Same chunk ids in both stores: **{same}** ({len(ray_ids):,} ids, none twice); files added "
            f"{local.files_added:,} / {on_ray.files_added:,}. Store on disk (LanceDB, 384-d float32 vectors, text, "
            f"keyword index): {size_mb:.1f} MB = **{size_mb / chunks * 1e6 / 1e3:.1f} GB per million chunks**. "
            f"Ray tasks per worker core: **{per_core_hour:,.0f} documents/hour** (~{args.chars} chars each, "
            f"{cores} cores shared by both nodes and the driver).",
            "",
        ]
    )


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--files", type=int, default=2000)
    options.add_argument("--chars", type=int, default=1500)
    run_writing(main_async, options, HEADING)


if __name__ == "__main__":
    main()
