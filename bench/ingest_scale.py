"""Ingestion at scale: `Ingestor` defaults vs a hand-written raw pipeline, and 100,000 documents.

    python bench/ingest_scale.py [--docs 500] [--repeat 5] [--embed-ms 50] [--embed-input-ms 1]
    python bench/ingest_scale.py --scale-docs 100000        # the long run (python -m bench --long)

Against one simulator (its own process), with embeddings costing embed_ms + embed_input_ms per input:
1. `--docs` generated documents (~1,500 characters), ingested alternately by the raw baseline and by `Ingestor`
   at its defaults, `--repeat` times each on fresh stores; medians and the ratio of medians. The raw baseline is
   what a user would write by hand: read every file, cut the *same* chunks as ours (`mini.ingest.chunking`
   defaults, so both send the same texts), embed them in batches of 100 with 8 requests in flight over one
   aiohttp session (base64 vectors, like ours), then write every row to LanceDB in one `add`. It keeps none of
   our guarantees (no skip of unchanged files, no resume, no per-file failures, memory grows with the corpus).
2. `--scale-docs` short documents (~600 characters, one chunk each; 0 skips it) ingested at defaults by a fresh
   process: wall vs ideal (the provider's time for the requests made divided by the requests in flight),
   peak RSS (VmHWM), the table's indices after the run (built by the ingestion itself, nothing called after),
   and the p50/p95 of 200 single searches (top 5) after it. The corpus lives under --tmp and is deleted after.
   Also, right before it, the *client floor*: the same number of requests of the same size sent by the bare
   embedder, `DEFAULT_CONCURRENCY` in flight, nothing else running (no files, no store). On a loaded machine
   the simulator and the client take turns for the cores, and requests take longer than simulated even with
   nothing else to do: wall/floor is what the pipeline adds on top. CPU seconds of the ingesting process (all
   threads; its event-loop thread alone) and of the simulator say who had the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

try:  # `python bench/ingest_scale.py`; `python -m bench.ingest_scale` finds it as bench._common
    from _common import machine, parser, run, sim_embedding
    from scale_process import process_cpu_s
except ModuleNotFoundError:
    from bench._common import machine, parser, run, sim_embedding
    from bench.scale_process import process_cpu_s

RAW_BATCH = 100
RAW_IN_FLIGHT = 8


async def raw_ingest(base_url: str, corpus: Path, store_dir: Path) -> int:
    """The raw baseline (see the module docstring); returns the rows written."""
    import aiohttp
    import lancedb
    import pyarrow as pa

    from mini.ingest.chunking import chunk_text

    texts: list[str] = []
    sources: list[str] = []
    for path in sorted(corpus.iterdir()):  # noqa: ASYNC240 - what a hand-written script does
        for piece in chunk_text(path.read_text(encoding="utf-8")):
            texts.append(piece)
            sources.append(str(path))
    slots = asyncio.Semaphore(RAW_IN_FLIGHT)
    async with aiohttp.ClientSession() as session:

        async def embed(batch: list[str]) -> list[np.ndarray]:
            payload = {"model": "sim-embed", "input": batch, "encoding_format": "base64"}
            async with slots, session.post(f"{base_url}/embeddings", json=payload) as response:
                response.raise_for_status()
                body = await response.json()
            return [np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in body["data"]]

        batches = [texts[i : i + RAW_BATCH] for i in range(0, len(texts), RAW_BATCH)]
        vectors = [v for part in await asyncio.gather(*map(embed, batches)) for v in part]
    matrix = np.stack(vectors)
    rows = pa.table(
        {
            "id": [f"{s}#{i}" for i, s in enumerate(sources)],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1]),
            "text": texts,
            "source": sources,
        }
    )
    db = await lancedb.connect_async(str(store_dir))
    table = await db.create_table("raw", schema=rows.schema)
    await table.add(rows)
    return rows.num_rows


async def ours_ingest(sim: Any, corpus: Path, store_dir: Path) -> int:
    from mini import VectorStore
    from mini.ingest.pipeline import Ingestor

    model = sim_embedding(sim)
    try:
        report = await Ingestor(VectorStore(str(store_dir), collection_name="bench"), model).run([corpus])
    finally:
        await model.aclose()
    assert report.ok, report.failures[:3]
    return report.chunks_added


async def timed(work: Any) -> tuple[float, int]:
    start = time.perf_counter()
    rows = await work
    return time.perf_counter() - start, rows


def ideal_s(stats: dict[str, Any], embed_ms: float, input_ms: float, in_flight: int) -> float:
    """The provider's time for the requests made, divided by the requests in flight."""
    return (stats["requests"] * embed_ms + stats["inputs_embedded"] * input_ms) / 1000.0 / in_flight


async def versus_raw(sim: Any, tmp: Path, args: argparse.Namespace) -> str:
    from mini.ingest.pipeline import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY
    from mini.testing.corpus import write_corpus

    corpus = tmp / "docs"
    write_corpus(corpus, args.docs)
    # Warm-up of both (imports, HTTP pools, LanceDB's first table), outside the measurements.
    await raw_ingest(sim.base_url, corpus, tmp / "warm-raw")
    await ours_ingest(sim, corpus, tmp / "warm-ours")
    sim.configure(embed_ms=args.embed_ms, embed_input_ms=args.embed_input_ms)
    walls: dict[str, list[float]] = {"raw": [], "ours": []}
    ideals: dict[str, float] = {}
    rows: dict[str, int] = {}
    for attempt in range(args.repeat):
        for name in ("raw", "ours") if attempt % 2 == 0 else ("ours", "raw"):
            sim.reset()
            store = tmp / f"{name}-{attempt}"
            work = (
                raw_ingest(sim.base_url, corpus, store) if name == "raw" else ours_ingest(sim, corpus, store)
            )
            wall, rows[name] = await timed(work)
            walls[name].append(wall)
            in_flight = RAW_IN_FLIGHT if name == "raw" else DEFAULT_CONCURRENCY
            ideals[name] = ideal_s(sim.stats()["embeddings"], args.embed_ms, args.embed_input_ms, in_flight)
            shutil.rmtree(store, ignore_errors=True)
    raw, ours = statistics.median(walls["raw"]), statistics.median(walls["ours"])
    label = {
        "raw": f"raw: aiohttp, batch {RAW_BATCH}, {RAW_IN_FLIGHT} in flight, one LanceDB add",
        "ours": f"`Ingestor` defaults (batch {DEFAULT_BATCH_SIZE}, {DEFAULT_CONCURRENCY} in flight)",
    }
    lines = [
        f"| {label[name]} | {statistics.median(walls[name]):.3f} | {min(walls[name]):.3f} "
        f"| {ideals[name]:.3f} | {statistics.median(walls[name]) / ideals[name]:.2f} | {rows[name]} |"
        for name in ("raw", "ours")
    ]
    return (
        f"{args.docs} generated documents of ~1,500 characters, the same chunks for both; simulated embeddings "
        f"{args.embed_ms:g} ms + {args.embed_input_ms:g} ms per input; {args.repeat} alternating runs each, "
        f"fresh stores.\n{machine()}\n\n"
        "| pipeline | median wall s | best s | ideal s | median/ideal | rows |\n"
        "|---|---:|---:|---:|---:|---:|\n"
        + "\n".join(lines)
        + f"\n\n`Ingestor` / raw (medians): **{ours / raw:.2f}x**."
    )


_SCALE_CHILD = """
import asyncio, json, statistics, sys, time
from pathlib import Path
from mini.testing.looplag import LoopLagProbe, own_stalls
import numpy as np
from mini import EmbeddingModel, VectorStore
from mini.ingest.pipeline import Ingestor

def status_mb(name):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1]) / 1024
    return 0.0

async def main(corpus, store_dir, base_url, queries):
    model = EmbeddingModel("openai:sim-embed", base_url=base_url, api_key="sim", dimension=384)
    store = VectorStore(store_dir, collection_name="bench")
    base = status_mb("VmRSS")
    start, cpu, loop_cpu = time.perf_counter(), time.process_time(), time.thread_time()
    async with LoopLagProbe() as probe:
        report = await Ingestor(store, model).run([Path(corpus)])
    wall = time.perf_counter() - start
    cpu, loop_cpu = time.process_time() - cpu, time.thread_time() - loop_cpu
    lags = sorted(own_stalls(probe.ticks, probe.control_stalls, probe.interval, probe.waits))
    assert report.ok, report.failures[:3]
    peak = status_mb("VmHWM")
    table = await store.backend._get_table()
    indices = [f"{ix.index_type} on {','.join(ix.columns)}" for ix in await table.list_indices()]
    texts = [f"council budget for the harbour ferry, question {i}" for i in range(queries)]
    vectors = await model.embed_async(texts)
    await model.aclose()
    for vector in vectors[:10]:  # warm: the index's first reads come from disk
        await store.backend.search(vector, top_k=5)
    latencies = []
    for vector in vectors:
        began = time.perf_counter()
        await store.backend.search(vector, top_k=5)
        latencies.append((time.perf_counter() - began) * 1000)
    latencies.sort()
    print(json.dumps({
        "wall_s": wall, "peak_rss_mb": peak, "base_rss_mb": base, "chunks": report.chunks_added,
        "files": report.files_added, "indices": indices, "rows": await store.backend.count(),
        "search_p50_ms": statistics.median(latencies), "search_p95_ms": latencies[int(0.95 * len(latencies))],
        "timings_ms": report.timings_ms, "cpu_s": cpu, "loop_cpu_s": loop_cpu,
        "lag_p99_ms": 1000 * lags[int(0.99 * len(lags))] if lags else 0.0,
    }))

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


def at_scale(sim: Any, tmp: Path, args: argparse.Namespace) -> str:
    from mini.ingest.pipeline import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY
    from mini.testing.corpus import write_corpus

    corpus = tmp / "scale-docs"
    started = time.perf_counter()
    write_corpus(corpus, args.scale_docs, chars=600, seed=2)
    written = time.perf_counter() - started
    sim.configure(embed_ms=args.embed_ms, embed_input_ms=args.embed_input_ms)
    requests = -(-args.scale_docs // DEFAULT_BATCH_SIZE)
    floor = asyncio.run(client_floor(sim, requests, DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY))
    sim.reset()
    sim_cpu = process_cpu_s(sim.pid)
    result = subprocess.run(
        [sys.executable, "-c", _SCALE_CHILD, str(corpus), str(tmp / "scale-store"), sim.base_url, "200"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"the scale run failed:\n{result.stderr[-4000:]}")
    sim_cpu = process_cpu_s(sim.pid) - sim_cpu  # includes serving the 200 query embeddings: one request
    out = json.loads(result.stdout.strip().splitlines()[-1])
    stats = sim.stats()["embeddings"]
    # The 200 query embeddings were one more request after the ingestion: not the ingestion's.
    stats = {"requests": stats["requests"] - 1, "inputs_embedded": stats["inputs_embedded"] - 200}
    ideal = ideal_s(stats, args.embed_ms, args.embed_input_ms, DEFAULT_CONCURRENCY)
    vector_index = [ix for ix in out["indices"] if "vector" in ix]
    stages = ", ".join(f"{k} {v / 1000:.1f}" for k, v in out["timings_ms"].items() if k != "total")
    return (
        f"{args.scale_docs:,} generated documents of ~600 characters (one chunk each; written in {written:.0f} s, "
        f"not counted), `Ingestor` defaults in a fresh process, simulated embeddings {args.embed_ms:g} ms + "
        f"{args.embed_input_ms:g} ms per input.\n{machine()}\n\n"
        "| wall s | ideal s | wall/ideal | rows | requests | peak RSS MB (VmHWM) | vector index after the run "
        "| search p50 ms | search p95 ms |\n|---:|---:|---:|---:|---:|---:|---|---:|---:|\n"
        f"| {out['wall_s']:.1f} | {ideal:.1f} | **{out['wall_s'] / ideal:.2f}** | {out['rows']:,} "
        f"| {stats['requests']:,} | **{out['peak_rss_mb']:.0f}** (after imports {out['base_rss_mb']:.0f}) "
        f"| {'; '.join(vector_index) or 'none'} | **{out['search_p50_ms']:.1f}** | {out['search_p95_ms']:.1f} |\n\n"
        f"Client floor (the same {requests:,} requests of {DEFAULT_BATCH_SIZE} texts by the bare embedder, "
        f"{DEFAULT_CONCURRENCY} in flight, nothing else running): {floor:.1f} s, {floor / ideal:.2f}x ideal; "
        f"the ingestion's wall/floor: **{out['wall_s'] / floor:.2f}**. CPU during the ingestion: its process "
        f"{out['cpu_s']:.1f} s (event-loop thread {out['loop_cpu_s']:.1f} s), the simulator {sim_cpu:.1f} s; "
        f"event-loop lag p99 {out['lag_p99_ms']:.1f} ms (own, `LoopLagProbe`).\n\n"
        f"All indices after the run: {'; '.join(out['indices']) or 'none'}. Stage times summed over concurrent "
        f"tasks (s): {stages}."
    )


async def client_floor(sim: Any, requests: int, batch: int, in_flight: int) -> float:
    """Seconds for `requests` embedding requests of `batch` texts by the bare embedder, `in_flight` at once."""
    model = sim_embedding(sim)
    texts = [f"floor text {i} " + "lorem ipsum dolor sit amet " * 20 for i in range(batch)]
    try:
        await model.embedder.embed(texts, input_type="document")  # warm: the connection pool
        slots = asyncio.Semaphore(in_flight)

        async def one() -> None:
            async with slots:
                await model.embedder.embed(texts, input_type="document")

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(requests)))
        return time.perf_counter() - start
    finally:
        await model.aclose()


async def main_async(args: argparse.Namespace) -> str:
    from mini.testing.sim import SimServer

    parts = []
    root = Path(args.tmp) if args.tmp else None
    with SimServer(chat_ms=0, embed_ms=0) as sim, tempfile.TemporaryDirectory(dir=root) as tmp_name:
        if args.docs:
            parts.append(await versus_raw(sim, Path(tmp_name), args))
        if args.scale_docs:
            sim.configure(embed_ms=0, embed_input_ms=0)
            parts.append(await asyncio.to_thread(at_scale, sim, Path(tmp_name), args))
    return "\n\n".join(parts)


def main() -> None:
    options = parser(__doc__, docs=500, repeat=5, scale_docs=0)
    options.add_argument("--embed-ms", type=float, default=50)
    options.add_argument("--embed-input-ms", type=float, default=1)
    options.add_argument("--tmp", default="", help="where the corpora and stores go (default: the system's)")
    run(main_async, options)


if __name__ == "__main__":
    main()
