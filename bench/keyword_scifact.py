"""Keyword leg on BEIR SciFact: cached per-word BM25 scores vs one LanceDB full-text query per question.

    python bench/keyword_scifact.py [--data ../shared/data/scifact] [--concurrency 64] [--top-k 200]

The SciFact corpus is ingested as `mini eval beir` does (default chunking; the simulated provider's embeddings,
since the keyword leg never reads vectors), then the 300 judged test queries run keyword-only, all at once
under `--concurrency`, three ways on the same table: one LanceDB query per question (what every question paid
before), the cache cold (a new table version: every word is fetched once; the 1 s settling time of a new version is
turned off here), and the cache warm. Rankings are
compared id by id at `--top-k` (what `mini eval beir` fetches), and nDCG@10 is computed from each. Identical
keyword rankings give identical hybrid fusion, hence the same hybrid nDCG@10. Client CPU is process time per
query (LanceDB's native threads included), the median of `--rounds` rounds.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

try:  # `python bench/keyword_scifact.py`; `python -m bench.keyword_scifact` finds bench._common
    from _common import REPO, machine, run, sim_embedding, table
except ModuleNotFoundError:
    from bench._common import REPO, machine, run, sim_embedding, table

import argparse


async def timed_round(
    queries: dict[str, str], search: Callable[[str], Awaitable[list]], concurrency: int
) -> tuple[float, dict[str, list]]:
    """CPU ms per query, and each query's ranking."""
    slots = asyncio.Semaphore(concurrency)
    out: dict[str, list] = {}

    async def one(qid: str, text: str) -> None:
        async with slots:
            out[qid] = await search(text)

    cpu = time.process_time()
    await asyncio.gather(*(one(qid, text) for qid, text in queries.items()))
    return (time.process_time() - cpu) / len(queries) * 1000.0, out


def same_ranking(a: list, b: list, tolerance: float = 1e-5) -> bool:
    """Scores equal within float32 rounding (LanceDB sums in float32, the cache in float64), and the same
    chunks at each position but among equal scores (no defined order), except the last group (the cut may
    fall inside it)."""
    if len(a) != len(b):
        return False
    if any(abs(x.score - y.score) > tolerance * max(1.0, abs(x.score)) for x, y in zip(a, b, strict=True)):
        return False
    start = 0
    for end in range(1, len(a) + 1):
        if end == len(a) or a[end - 1].score - a[end].score > tolerance * max(1.0, abs(a[end].score)):
            last = end == len(a)
            if not last and {h.id for h in a[start:end]} != {h.id for h in b[start:end]}:
                return False
            start = end
    return True


async def main_async(args: argparse.Namespace) -> str:
    from mini import AgenticRAG, VectorStore
    from mini.eval.beir import documents_of, load_beir
    from mini.eval.metrics import mean, ndcg_at_k
    from mini.testing.sim import SimServer

    dataset = await asyncio.to_thread(load_beir, args.data)
    with SimServer(chat_ms=0, embed_ms=0) as sim, tempfile.TemporaryDirectory() as tmp:
        rag = AgenticRAG(VectorStore(tmp, collection_name="scifact"), sim_embedding(sim), llm_config=None)
        started = time.perf_counter()
        report = await rag.index_documents_async(dataset.corpus)
        assert report.ok, report.failures
        ingest_s = time.perf_counter() - started
        backend = rag.vector_store.backend
        backend._keyword_scores.settle = 0.0  # measure the cache from the first batch on (see SETTLE_S)
        await backend.optimize()  # every row in the full-text index, as after any ingestion
        table_ = await backend._get_table()
        rows = await backend.count()

        async def direct(text: str) -> list:
            return await backend._keyword_direct(table_, text, args.top_k)

        async def cached(text: str) -> list:
            return await backend.keyword_search(text, top_k=args.top_k)

        cpu: dict[str, list[float]] = {"direct": [], "cold": [], "warm": []}
        rankings: dict[str, dict[str, list]] = {}
        for _ in range(args.rounds):
            cpu["direct"].append((result := await timed_round(dataset.queries, direct, args.concurrency))[0])
            rankings["direct"] = result[1]
            backend._keyword_scores.forget()  # as after a write: a new version starts an empty cache
            cpu["cold"].append((result := await timed_round(dataset.queries, cached, args.concurrency))[0])
            cpu["warm"].append((result := await timed_round(dataset.queries, cached, args.concurrency))[0])
            rankings["cached"] = result[1]
        await rag.aclose()

    def ndcg(name: str) -> float:
        return mean(
            ndcg_at_k(documents_of(rankings[name][qid]), dataset.qrels[qid], 10) for qid in dataset.queries
        )

    same = sum(same_ranking(rankings["direct"][qid], rankings["cached"][qid]) for qid in dataset.queries)
    same_docs = sum(
        documents_of(rankings["direct"][qid])[:10] == documents_of(rankings["cached"][qid])[:10]
        for qid in dataset.queries
    )
    header = (
        f"BEIR SciFact test: {len(dataset.queries)} queries, keyword leg only, top {args.top_k} chunks, "
        f"{rows:,} chunks (ingested in {ingest_s:.0f} s with simulated embeddings), {args.concurrency} queries "
        f"at once, median of {args.rounds} rounds. Same chunk rankings (the same scores within float32 "
        f"rounding, the same chunks at each score: equal scores come in no defined order): {same}/{len(dataset.queries)}; "
        f"identical top-10 documents: {same_docs}/{len(dataset.queries)}.\n{machine()}\n\n"
    )
    median = {name: statistics.median(values) for name, values in cpu.items()}
    rows_md = [
        f"| one LanceDB query per question | {ndcg('direct'):.4f} | {median['direct']:.2f} | 1.00 |",
        f"| cached word scores, cold (new version) | {ndcg('cached'):.4f} | {median['cold']:.2f} "
        f"| {median['cold'] / median['direct']:.2f} |",
        f"| cached word scores, warm | {ndcg('cached'):.4f} | {median['warm']:.2f} "
        f"| **{median['warm'] / median['direct']:.2f}** |",
    ]
    columns = ["keyword leg", "nDCG@10", "client CPU ms/query", "vs one query per question"]
    return table(header, columns, "lrrr", rows_md)


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "scifact"))
    options.add_argument("--concurrency", type=int, default=64)
    options.add_argument("--top-k", type=int, default=200)
    options.add_argument("--rounds", type=int, default=3)
    run(main_async, options)


if __name__ == "__main__":
    sys.exit(main())
