"""Ingestion: generated documents through the simulated embeddings provider into the embedded store.

    python bench/ingest.py [--docs 500] [--embed-ms 50] [--embed-input-ms 1] [--rss-docs 20000]

Runs, in one process against one simulator (its own process, not counted in CPU or RSS):
1. the default settings (concurrency 8, batch 64) and the same with --concurrency 1, on a fresh store each;
   "ideal" is ceil(requests / concurrency) x one request's simulated time (embed_ms + batch x embed_input_ms),
   the wait no client can avoid with that many requests in flight;
2. a re-run on the unchanged corpus (embedding requests and new rows), then one file changed;
3. the event loop's worst stall during the default run (mini.testing.looplag);
4. peak RSS of a separate process ingesting --rss-docs documents (0 skips it).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:  # `python bench/ingest.py`; `python -m bench.ingest` finds it as bench._common
    from _common import machine, parser, run, sim_embedding
except ModuleNotFoundError:
    from bench._common import machine, parser, run, sim_embedding


async def ingest_once(sim: Any, corpus: Path, store_dir: Path, **options: Any) -> tuple[Any, float, float]:
    from mini import VectorStore
    from mini.ingest.pipeline import Ingestor

    model = sim_embedding(sim)
    ingestor = Ingestor(VectorStore(str(store_dir), collection_name="bench"), model, **options)
    cpu = time.process_time()
    start = time.perf_counter()
    try:
        report = await ingestor.run([corpus])
    finally:
        await model.aclose()
    wall = time.perf_counter() - start
    assert report.ok, report.failures
    return report, wall, time.process_time() - cpu


def ideal_s(requests: int, concurrency: int, batch: int, embed_ms: float, input_ms: float) -> float:
    return math.ceil(requests / concurrency) * (embed_ms + batch * input_ms) / 1000.0


async def main_async(args: argparse.Namespace) -> str:
    from mini.ingest.pipeline import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY
    from mini.testing.corpus import write_corpus
    from mini.testing.looplag import LoopLagProbe
    from mini.testing.sim import SimServer

    lines = []
    with SimServer(chat_ms=0, embed_ms=0) as sim, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        corpus = tmp / "docs"
        write_corpus(corpus, args.docs)
        # Warm-up: imports, the HTTP pool and LanceDB's first table, outside the measurements.
        await ingest_once(sim, corpus, tmp / "warm")
        sim.configure(embed_ms=args.embed_ms, embed_input_ms=args.embed_input_ms)
        rows = []
        for label, concurrency in (("default", DEFAULT_CONCURRENCY), ("--concurrency 1", 1)):
            sim.reset()
            probe = LoopLagProbe()
            async with probe:
                report, wall, cpu = await ingest_once(
                    sim, corpus, tmp / f"store-{concurrency}", concurrency=concurrency
                )
            stats = sim.stats()["embeddings"]
            ideal = ideal_s(
                stats["requests"], concurrency, DEFAULT_BATCH_SIZE, args.embed_ms, args.embed_input_ms
            )
            rows.append((label, wall))
            lines.append(
                f"| {label} (c={concurrency}, batch {DEFAULT_BATCH_SIZE}) | {wall:.2f} | {ideal:.2f} "
                f"| {wall / ideal:.2f} | {report.chunks_added} | {stats['requests']} | {stats['peak_in_flight']} "
                f"| {cpu * 1000 / args.docs:.2f} | {probe.own_max_ms:.0f} |"
            )
        speedup = rows[1][1] / rows[0][1]
        sim.reset()
        rerun, rerun_wall, _ = await ingest_once(sim, corpus, tmp / f"store-{DEFAULT_CONCURRENCY}")
        rerun_stats = sim.stats()["embeddings"]
        changed = corpus / "doc00007.txt"
        changed.write_text(changed.read_text() + "\n\nOne new closing paragraph about the harbour ferry.")
        sim.reset()
        edit, edit_wall, _ = await ingest_once(sim, corpus, tmp / f"store-{DEFAULT_CONCURRENCY}")
        edit_stats = sim.stats()["embeddings"]
        rss = peak_rss(sim, tmp, args) if args.rss_docs else None

    header = (
        f"{args.docs} generated documents of ~1,500 characters (`mini.testing.corpus`), simulated embeddings "
        f"{args.embed_ms:.0f} ms + {args.embed_input_ms:g} ms per input, embedded LanceDB store on local disk.\n"
        f"{machine()}\n\n"
        "| run | wall s | ideal s | measured/ideal | chunks | requests | peak in flight | client CPU ms/doc "
        "| worst loop stall ms |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    body = "\n".join(lines)
    summary = (
        f"\n\nDefault vs --concurrency 1: **{speedup:.1f}x**. "
        f"Re-run on the unchanged corpus: {rerun_wall:.2f} s, {rerun_stats['requests']} embedding requests, "
        f"{rerun.chunks_added} new rows ({rerun.files_skipped} files skipped). "
        f"One file changed: {edit.files_updated} updated, {edit_stats['inputs_embedded']} text(s) embedded "
        f"in {edit_stats['requests']} request(s), {edit_wall:.2f} s."
    )
    if rss is not None:
        summary += (
            f"\n\nPeak RSS ingesting {args.rss_docs:,} documents ({rss['chunks']:,} chunks, "
            f"{rss['wall_s']:.1f} s) in a fresh process: **{rss['peak_rss_mb']:.0f} MB** "
            f"(after imports, before ingesting: {rss['base_rss_mb']:.0f} MB)."
        )
    return header + body + summary


_RSS_CHILD = """
import asyncio, json, resource, sys, time
from pathlib import Path
from mini import EmbeddingModel, VectorStore
from mini.ingest.pipeline import Ingestor

def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0

corpus, store, base_url = sys.argv[1:4]
model = EmbeddingModel("openai:sim-embed", base_url=base_url, api_key="sim", dimension=384)
ingestor = Ingestor(VectorStore(store, collection_name="bench"), model)
base = rss_mb()
start = time.perf_counter()
report = asyncio.run(ingestor.run([Path(corpus)]))
assert report.ok, report.failures[:3]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"peak_rss_mb": peak, "base_rss_mb": base, "chunks": report.chunks_added,
                  "wall_s": time.perf_counter() - start}))
"""


def peak_rss(sim: Any, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    from mini.testing.corpus import write_corpus

    corpus = tmp / "big"
    write_corpus(corpus, args.rss_docs, seed=1)
    sim.reset()
    result = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD, str(corpus), str(tmp / "store-big"), sim.base_url],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--docs", type=int, default=500)
    options.add_argument("--embed-ms", type=float, default=50)
    options.add_argument("--embed-input-ms", type=float, default=1)
    options.add_argument("--rss-docs", type=int, default=20_000, help="0 skips the memory run")
    run(main_async, options)


if __name__ == "__main__":
    main()
