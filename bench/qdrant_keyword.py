"""Qdrant's keyword leg on BEIR SciFact: our BM25 terms vs Qdrant's own BM25, quality and time per query.

    python bench/qdrant_keyword.py [--data ../shared/data/scifact] [--queries 300] [--qdrant-url URL]

Keyword-only retrieval (no dense leg, no fusion), one row per document (title + text, not chunked), the BEIR
`test` queries, nDCG@10 and recall@100 (binary gains, as BEIR). Rows:
- client terms, local mode: `QdrantBackend(":memory:")`, i.e. `mini.stores.sparse` terms in a sparse vector
  with Qdrant's IDF modifier: what local mode (and servers before 1.15.3) use;
- text index BM25, local mode: qdrant-client's local engine ranking by a payload text index with `scoring`
  (`TextQuery`), the only native BM25 local mode has without fastembed (whose `qdrant/bm25` model files
  would be downloaded at run time). Measured to decide, not used: it scans and re-tokenizes every text per
  query, and has no stemming or stop words;
- server BM25 (with --qdrant-url): `QdrantBackend(URL)` on a Qdrant server >= 1.15.3, which analyses the
  texts itself (`qdrant/bm25`). No server is reachable on the machine the numbers in BENCHMARKS.md come from.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import statistics
import time
from pathlib import Path

from mini.stores.base import Record
from mini.stores.qdrant import QdrantBackend

DIM = 4  # the dense leg is not measured: tiny placeholder vectors


def load(data: Path, limit: int) -> tuple[dict[str, str], dict[str, str], dict[str, set[str]]]:
    docs = {}
    with (data / "corpus.jsonl").open() as f:
        for line in f:
            row = json.loads(line)
            docs[row["_id"]] = f"{row['title']} {row['text']}".strip()
    qrels: dict[str, set[str]] = {}
    with (data / "qrels" / "test.tsv").open(newline="") as f:
        for qid, did, score in list(csv.reader(f, delimiter="\t"))[1:]:
            if int(score) > 0:
                qrels.setdefault(qid, set()).add(did)
    queries = {}
    with (data / "queries.jsonl").open() as f:
        for line in f:
            row = json.loads(line)
            if row["_id"] in qrels:
                queries[row["_id"]] = row["text"]
    chosen = dict(list(queries.items())[:limit])
    return docs, chosen, qrels


def ndcg_at_10(ranked: list[str], relevant: set[str]) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked[:10]) if d in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(10, len(relevant))))
    return dcg / ideal


def recall_at_100(ranked: list[str], relevant: set[str]) -> float:
    return len(set(ranked[:100]) & relevant) / len(relevant)


def unit(i: int) -> list[float]:
    vector = [0.0] * DIM
    vector[i % DIM] = 1.0
    return vector


async def run_backend(
    uri: str, docs: dict[str, str], queries: dict[str, str]
) -> tuple[dict[str, list[str]], list[float], str]:
    backend = QdrantBackend(uri, collection_name="scifact_keyword", dimension=DIM)
    try:
        await backend.drop()
        records = [Record(d, unit(i), text, {}) for i, (d, text) in enumerate(docs.items())]
        for start in range(0, len(records), 1_000):
            await backend.upsert(records[start : start + 1_000])
        mode = str(backend.keyword_mode)
        runs, times = {}, []
        for qid, text in queries.items():
            started = time.perf_counter()
            hits = await backend.keyword_search(text, top_k=100)
            times.append(time.perf_counter() - started)
            runs[qid] = [h.id for h in hits]
        if not uri.startswith(":"):
            await backend.drop()
        return runs, times, mode
    finally:
        await backend.aclose()


def run_text_index(docs: dict[str, str], queries: dict[str, str]) -> tuple[dict[str, list[str]], list[float]]:
    from qdrant_client import QdrantClient, models

    client = QdrantClient(":memory:")
    client.create_collection(
        "t", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE)
    )
    client.create_payload_index(
        "t", "text", models.TextIndexParams(type=models.TextIndexType.TEXT, scoring=True)
    )
    ids = list(docs)
    for start in range(0, len(ids), 1_000):
        client.upsert(
            "t",
            [
                models.PointStruct(id=i, vector=unit(i), payload={"text": docs[ids[i]]})
                for i in range(start, min(start + 1_000, len(ids)))
            ],
        )
    runs, times = {}, []
    for qid, text in queries.items():
        started = time.perf_counter()
        answer = client.query_points("t", query=models.TextQuery(text=text), using="text", limit=100)
        times.append(time.perf_counter() - started)
        runs[qid] = [ids[int(p.id)] for p in answer.points]
    client.close()
    return runs, times


def row(name: str, runs: dict[str, list[str]], times: list[float], qrels: dict[str, set[str]]) -> str:
    ndcg = statistics.fmean(ndcg_at_10(runs[q], qrels[q]) for q in runs)
    recall = statistics.fmean(recall_at_100(runs[q], qrels[q]) for q in runs)
    return f"| {name} | {ndcg:.4f} | {recall:.4f} | {statistics.median(times) * 1000:,.1f} |"


async def main(args: argparse.Namespace) -> str:
    docs, queries, qrels = load(args.data, args.queries)
    lines = [
        f"SciFact: {len(docs):,} documents (title + text, one row each), {len(queries)} test queries, "
        "keyword leg only, top 100.",
        "",
        "| keyword leg | nDCG@10 | recall@100 | ms per query (p50) |",
        "|---|---:|---:|---:|",
    ]
    runs, times, mode = await run_backend(":memory:", docs, queries)
    lines.append(row(f"client terms (`mini.stores.sparse`), local mode [{mode}]", runs, times, qrels))
    if args.qdrant_url:
        runs, times, mode = await run_backend(args.qdrant_url, docs, queries)
        lines.append(row(f"QdrantBackend on the server [{mode}]", runs, times, qrels))
    if not args.skip_text_index:
        runs, times = await asyncio.to_thread(run_text_index, docs, queries)
        lines.append(row("Qdrant text index BM25 (`TextQuery`), local mode", runs, times, qrels))
    return "\n".join(lines)


if __name__ == "__main__":
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/scifact"
    )
    options.add_argument("--queries", type=int, default=300)
    options.add_argument("--qdrant-url", help="a Qdrant server, e.g. qdrant://localhost:6333")
    options.add_argument("--skip-text-index", action="store_true", help="skip the slow local text-index row")
    print(asyncio.run(main(options.parse_args())))
