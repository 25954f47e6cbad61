"""Concurrent searches on the embedded LanceDB store: one query per search vs coalesced multi-vector queries.

    python bench/store_search.py [--rows 21,20000] [--searches 64]

`searches` concurrent searches from one event loop, three ways, in one run:
- sequential: one after another (the baseline a sync API gives);
- concurrent, uncoalesced: asyncio.gather of plain LanceDB queries, at most 2 in flight (the cores here);
- mini: `LanceDBBackend.search` under gather, where concurrent searches share multi-vector queries.
Reported: wall time, process CPU per search, and the worst event-loop stall seen by a 1 ms ticker.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

try:  # `python bench/store_search.py`; `python -m bench.store_search` finds it as bench._common
    from _common import parser, run, table
except ModuleNotFoundError:
    from bench._common import parser, run, table


async def timed(run: Callable[[], Awaitable[Any]], searches: int) -> tuple[float, float, float]:
    from mini.testing.looplag import LoopLagProbe

    async with LoopLagProbe(controls=False) as probe:
        cpu, wall = time.process_time(), time.perf_counter()
        await run()
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
    return wall, cpu / searches * 1000, probe.raw_max_ms


async def bench_rows(path: str, rows: int, searches: int) -> list[str]:
    from mini.stores.base import Record
    from mini.stores.lancedb import LanceDBBackend

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((rows, 384)).astype(np.float32)
    backend = LanceDBBackend(path, collection_name=f"rows{rows}", dimension=384)
    await backend.upsert(
        [Record(f"r{i}", row, "text", {"source": f"s{i % 10}"}) for i, row in enumerate(vectors)]
    )
    table = await backend._get_table()
    assert table is not None
    queries = rng.standard_normal((searches, 384)).astype(np.float32)

    async def plain(q: np.ndarray) -> Any:
        return (
            await table.query()
            .nearest_to(q)
            .distance_type("cosine")
            .select(["id", "_distance"])
            .limit(10)
            .to_arrow()
        )

    async def sequential() -> None:
        for q in queries:
            await plain(q)

    async def concurrent() -> None:
        slots = asyncio.Semaphore(2)

        async def one(q: np.ndarray) -> Any:
            async with slots:
                return await plain(q)

        await asyncio.gather(*(one(q) for q in queries))

    async def coalesced() -> None:
        await asyncio.gather(*(backend.search(q, top_k=10) for q in queries))

    await coalesced()  # warm caches the same way for every mode
    out = []
    for name, run in (
        ("sequential", sequential),
        ("concurrent, one query each", concurrent),
        ("mini (coalesced)", coalesced),
    ):
        wall, cpu_ms, lag = await timed(run, searches)
        out.append(f"| {rows:,} | {name} | {wall:.3f} | {cpu_ms:.2f} | {lag:.0f} |")
    return out


async def main_async(args: argparse.Namespace) -> str:
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.rows:
            lines += await bench_rows(tmp, n, args.searches)
    intro = f"{args.searches} concurrent searches (top 10, 384 dims, no vector index).\n\n"
    columns = ["rows", "mode", "wall s", "CPU ms / search", "max loop stall ms"]
    return table(intro, columns, "rlrrr", lines)


def main() -> None:
    run(main_async, parser(__doc__, rows=[21, 20_000], searches=64))


if __name__ == "__main__":
    main()
