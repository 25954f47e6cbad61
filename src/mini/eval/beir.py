"""Retrieval quality on a BEIR-format dataset (corpus.jsonl, queries.jsonl, qrels/<split>.tsv): ingest the corpus
through the normal pipeline, run the judged queries concurrently in each retrieval mode, score the rankings.

Chunks are mapped back to their document (`metadata["doc_id"]`) and a document ranks at its best chunk, so the
numbers are the toolkit's own retrieval (chunking, embedding, fusion) as users get it, comparable with the BEIR
leaderboards that score whole documents.
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mini.errors import InvalidInputError
from mini.eval.metrics import mean, mrr_at_k, ndcg_at_k, recall_at_k
from mini.query.retrieval import MODES, HybridRetriever, Mode
from mini.types import Document

if TYPE_CHECKING:
    from mini.ingest.report import IngestReport
    from mini.rag import AgenticRAG

# Documents ranked per query: recall@100 needs 100; chunks fetched per document, to reach them after mapping.
RANK_DEPTH = 100
_CHUNKS_PER_DOC = 2


@dataclass(frozen=True, slots=True)
class BeirDataset:
    name: str
    corpus: list[Document]
    queries: dict[str, str]  # only the judged queries of the split
    qrels: dict[str, dict[str, int]]


def load_beir(path: str | Path, split: str = "test") -> BeirDataset:
    """Read a BEIR dataset directory (blocking: call it in a thread). Titles are prepended to the text."""
    root = Path(path)
    files = [root / "corpus.jsonl", root / "queries.jsonl", root / "qrels" / f"{split}.tsv"]
    for needed in files:
        if not needed.is_file():
            raise InvalidInputError(f"{root} is not a BEIR dataset: {needed} is missing")
    qrels: dict[str, dict[str, int]] = {}
    with files[2].open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    queries: dict[str, str] = {}
    for line in files[1].read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            if str(item["_id"]) in qrels:
                queries[str(item["_id"])] = item["text"]
    corpus = []
    for line in files[0].read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            doc_id = str(item["_id"])
            title, text = (item.get("title") or "").strip(), (item.get("text") or "").strip()
            body = f"{title}\n\n{text}" if title and text else title or text
            corpus.append(Document(body, f"beir:{root.name}/{doc_id}", {"doc_id": doc_id}))
    missing = sorted(set(qrels) - set(queries))
    if missing:
        raise InvalidInputError(f"{len(missing)} judged queries are not in queries.jsonl, e.g. {missing[0]}")
    return BeirDataset(root.name, corpus, queries, qrels)


@dataclass
class ModeResult:
    """One retrieval mode's scores over the judged queries that ran; failures are listed, not averaged."""

    mode: str
    metrics: dict[str, float]
    queries: int
    failures: list[dict[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "metrics": {k: round(v, 4) for k, v in self.metrics.items()},
            "queries_scored": self.queries,
            "queries_failed": len(self.failures),
            "failures": self.failures,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


@dataclass
class BeirReport:
    dataset: str
    split: str
    k: int
    documents: int
    ingest: dict[str, Any]
    results: list[ModeResult]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "k": self.k,
            "documents": self.documents,
            "ingest": self.ingest,
            "settings": self.settings,
            "results": [r.to_dict() for r in self.results],
        }


def score_ranking(ranked_docs: Sequence[str], relevance: dict[str, int], k: int) -> dict[str, float]:
    return {
        f"ndcg@{k}": ndcg_at_k(ranked_docs, relevance, k),
        f"recall@{RANK_DEPTH}": recall_at_k(ranked_docs, relevance, RANK_DEPTH),
        f"mrr@{k}": mrr_at_k(ranked_docs, relevance, k),
    }


def documents_of(chunks: Sequence[Any]) -> list[str]:
    """Document ids in the order of their best chunk."""
    seen: dict[str, None] = {}
    for chunk in chunks:
        doc_id = chunk.metadata.get("doc_id")
        if doc_id is not None:
            seen.setdefault(str(doc_id))
    return list(seen)


async def ingest_beir(rag: AgenticRAG, dataset: BeirDataset, *, progress: Any = None) -> IngestReport:
    """Index the corpus (idempotent: a second run skips every unchanged document)."""
    return await rag.index_documents_async(dataset.corpus, progress=progress)


async def evaluate_mode(
    rag: AgenticRAG,
    dataset: BeirDataset,
    mode: Mode,
    *,
    k: int = 10,
    concurrency: int = 16,
    rewrite: bool = False,
    on_done: Callable[[], None] | None = None,
) -> ModeResult:
    """Run every judged query in `mode`, at most `concurrency` at once, and average the metrics."""
    if mode not in MODES:
        raise InvalidInputError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    retriever = HybridRetriever(rag.vector_store, rag.embedding_model, rag.retrieval_config)
    slots = asyncio.Semaphore(concurrency)
    per_query: dict[str, dict[str, float]] = {}
    latencies: list[float] = []
    failures: list[dict[str, str]] = []

    async def one(qid: str, text: str) -> None:
        async with slots:
            started = time.perf_counter()
            try:
                queries = await rag.rewrite_query_async(text) if rewrite else [text]
                retrieval = await retriever.retrieve(
                    queries, question=text, top_k=RANK_DEPTH * _CHUNKS_PER_DOC, filter=None, mode=mode
                )
            except Exception as exc:  # one failing query is reported, the run goes on
                failures.append({"query_id": qid, "error": f"{type(exc).__name__}: {exc}"})
                return
            finally:
                if on_done is not None:
                    on_done()
            latencies.append((time.perf_counter() - started) * 1000.0)
            per_query[qid] = score_ranking(documents_of(retrieval.results), dataset.qrels[qid], k)

    started = time.perf_counter()
    await asyncio.gather(*(one(qid, text) for qid, text in dataset.queries.items()))
    wall = time.perf_counter() - started
    names = list(next(iter(per_query.values())).keys()) if per_query else []
    latencies.sort()
    return ModeResult(
        mode=mode,
        metrics={name: mean(scores[name] for scores in per_query.values()) for name in names},
        queries=len(per_query),
        failures=failures,
        timings={
            "wall_s": wall,
            "queries_per_s": len(dataset.queries) / wall if wall else 0.0,
            "p50_ms": _percentile(latencies, 0.50),
            "p95_ms": _percentile(latencies, 0.95),
        },
    )


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]
