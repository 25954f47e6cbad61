"""Store backends side by side: insert rate, search latency, 64 concurrent searches and event-loop lag.

    python bench/stores.py [--rows 100000] [--dim 384] [--backends lancedb,milvus-lite,qdrant-local]
                           [--milvus-uri URI] [--qdrant-url URL]

Each backend gets the same random unit vectors (seeded) through `mini.stores.base.create_backend`, i.e. the
same code a user's URI selects. Measured in one process, one backend after the other:
- insert: rows/s for `upsert` in batches of 5,000 (what ingestion writes);
- search p50: 50 sequential top-10 searches, median latency;
- 64 concurrent: wall time of 64 top-10 searches under asyncio.gather, and the worst stall of the event loop
  during them (a 1 ms ticker, mini.testing.looplag, machine-wide stalls discounted).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

BATCH = 5_000


def uri_for(kind: str, root: Path, args: argparse.Namespace) -> str:
    return {
        "lancedb": str(root / "lance"),
        "milvus-lite": str(root / "milvus.db"),
        "qdrant-local": f"qdrant+path://{root / 'qdrant'}",
        "milvus-server": args.milvus_uri or "",
        "qdrant-server": args.qdrant_url or "",
    }[kind]


async def bench_backend(kind: str, root: Path, args: argparse.Namespace, vectors: np.ndarray) -> str:
    from mini.stores.base import Record, create_backend
    from mini.testing.looplag import LoopLagProbe

    backend = create_backend(
        uri_for(kind, root, args),
        collection_name="bench",
        dimension=args.dim,
        token=os.environ.get("MINI_TOKEN"),
    )
    await backend.drop()
    rows = len(vectors)
    start = time.perf_counter()
    for first in range(0, rows, BATCH):
        part = vectors[first : first + BATCH]
        await backend.upsert(
            [
                Record(f"id{first + i}", v, f"text {first + i}", {"source": f"doc{(first + i) // 10}"})
                for i, v in enumerate(part)
            ]
        )
    optimize = getattr(backend, "optimize", None)
    if callable(optimize):
        await (
            optimize()
        )  # LanceDB: compaction and, past 50k rows, its IVF_FLAT index (counted in insert time)
    insert_s = time.perf_counter() - start
    assert await backend.count() == rows
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((64, args.dim)).astype(np.float32)
    await backend.search(queries[0], top_k=10)  # warm
    latencies = []
    for q in queries[:50]:
        t = time.perf_counter()
        await backend.search(q, top_k=10)
        latencies.append(time.perf_counter() - t)
    probe = LoopLagProbe()
    async with probe:
        t = time.perf_counter()
        results = await asyncio.gather(*(backend.search(q, top_k=10) for q in queries))
        concurrent_s = time.perf_counter() - t
    assert all(len(r) == 10 for r in results)
    await backend.drop()
    await backend.aclose()
    return (
        f"| {kind} | {rows / insert_s:,.0f} | {statistics.median(latencies) * 1000:.1f} "
        f"| {concurrent_s:.2f} | {probe.own_max_ms:.0f} |"
    )


async def main_async(args: argparse.Namespace) -> str:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.rows, args.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.backends:
            lines.append(await bench_backend(kind, Path(tmp), args, vectors))
            print(lines[-1], flush=True)
    header = (
        f"{args.rows:,} x {args.dim} random unit vectors; top 10; "
        f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores.\n\n"
        "| backend | insert rows/s | search p50 ms | 64 concurrent searches s | max loop stall ms |\n"
        "|---|---:|---:|---:|---:|\n"
    )
    return header + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument(
        "--backends", type=lambda s: s.split(","), default=["lancedb", "milvus-lite", "qdrant-local"]
    )
    parser.add_argument("--milvus-uri", help="add a Milvus server, e.g. http://localhost:19530")
    parser.add_argument("--qdrant-url", help="add a Qdrant server, e.g. qdrant://localhost:6333")
    args = parser.parse_args()
    if args.milvus_uri and "milvus-server" not in args.backends:
        args.backends.append("milvus-server")
    if args.qdrant_url and "qdrant-server" not in args.backends:
        args.backends.append("qdrant-server")
    print(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
