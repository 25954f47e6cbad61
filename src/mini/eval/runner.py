"""Evaluate a RAG on a question set: every question is one pipeline (answer, then its metrics concurrently),
`concurrency` of them at once, and every model request of the evaluation (answers, judge calls, embeddings for
the similarity metrics) holds one of `concurrency` slots, so at most that many are in flight from here.
`concurrency=1` is the sequential fallback: one request at a time. Each row ends scored or failed with a reason.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mini import _portal
from mini._checks import at_least
from mini._tasks import gather_all
from mini.errors import ConfigurationError, InvalidInputError
from mini.eval.dataset import EvalItem, as_items, judged_ranking
from mini.eval.judge import Judge
from mini.eval.metrics import hit_at_k, mean, mrr_at_k, ndcg_at_k, recall_at_k
from mini.eval.results import EvalResult, EvalRow, Score
from mini.eval.text_metrics import Unscorable, citation_coverage, cosine, rouge_l, strip_citations, token_f1
from mini.llms.base import Usage

if TYPE_CHECKING:
    from mini.llms.base import LLM
    from mini.rag import AgenticRAG
    from mini.types import RetrievalResult

log = logging.getLogger("mini.eval")

RETRIEVAL_METRICS = ("hit", "mrr", "ndcg", "recall")
OFFLINE_METRICS = ("token_f1", "rouge_l", "semantic_similarity", "citation_coverage")
JUDGE_METRICS = ("faithfulness", "answer_relevancy", "context_precision", "context_recall")
ALL_METRICS = RETRIEVAL_METRICS + OFFLINE_METRICS + JUDGE_METRICS
METRIC_GROUPS = {
    "retrieval": RETRIEVAL_METRICS,
    "offline": OFFLINE_METRICS,
    "llm": JUDGE_METRICS,
    "all": ALL_METRICS,
}
_NEEDS_GROUND_TRUTH = frozenset({"token_f1", "rouge_l", "semantic_similarity", "context_recall"})
_RANKING = {"hit": hit_at_k, "mrr": mrr_at_k, "ndcg": ndcg_at_k, "recall": recall_at_k}
_STAGES_BEFORE_ANSWER = ("rewrite", "embed", "search", "rerank")

Dataset = str | Path | Sequence[EvalItem | Mapping[str, Any] | str]
Progress = Callable[[EvalRow], object]


def select_metrics(metrics: Sequence[str] | None, *, has_judge: bool) -> list[str]:
    """Metric names in canonical order. Default: every metric, the LLM-judged ones only with a judge.

    Names may be groups (retrieval, offline, llm, all) or comma-separated. Asking for an LLM-judged metric
    without an LLM is a `ConfigurationError`, before anything runs.
    """
    if metrics is None:
        return list(RETRIEVAL_METRICS + OFFLINE_METRICS + (JUDGE_METRICS if has_judge else ()))
    if isinstance(metrics, str):
        metrics = [metrics]
    wanted: set[str] = set()
    for entry in metrics:
        for name in (part.strip().lower() for part in entry.split(",")):
            if not name:
                continue
            if name in METRIC_GROUPS:
                group = METRIC_GROUPS[name]
                wanted.update(m for m in group if has_judge or name != "all" or m not in JUDGE_METRICS)
            elif name in ALL_METRICS:
                wanted.add(name)
            else:
                choices = ", ".join([*ALL_METRICS, *METRIC_GROUPS])
                raise InvalidInputError(f"unknown metric {name!r}; choose from {choices}")
    if not wanted:
        raise InvalidInputError("no metrics chosen")
    judged = sorted(wanted.intersection(JUDGE_METRICS))
    if judged and not has_judge:
        raise ConfigurationError(
            f"{', '.join(judged)} need an LLM judge: configure an LLM (llm_config, MINI_LLM or --llm) "
            "or choose offline metrics"
        )
    return [m for m in ALL_METRICS if m in wanted]


def metric_key(name: str, k: int) -> str:
    """How a metric is reported: retrieval metrics carry their cut-off ("ndcg@5")."""
    return f"{name}@{k}" if name in RETRIEVAL_METRICS else name


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class _Evaluation:
    """The shared state of one run: the RAG, the judge, the chosen metrics and the request slots."""

    def __init__(
        self, rag: AgenticRAG, judge: Judge | None, metrics: list[str], k: int, slots: asyncio.Semaphore
    ) -> None:
        self.rag, self.judge, self.metrics, self.k, self.slots = rag, judge, metrics, k, slots
        self.answer_usage = Usage()

    async def row(self, index: int, item: EvalItem) -> EvalRow:
        started = time.perf_counter()
        try:
            async with self.slots:
                response = await self.rag.query_async(item.question)
        except Exception as exc:  # one failing question is a failed row; the run goes on
            log.debug("question %s failed", item.id, exc_info=True)
            reason = describe(exc)
            failed = {metric_key(m, self.k): Score.failed(f"no answer: {reason}") for m in self.metrics}
            elapsed = (time.perf_counter() - started) * 1000.0
            return EvalRow(index, item, None, (), failed, error=reason, timings_ms={"total": elapsed})
        contexts = tuple(response.retrieved_chunks)
        usage = response.metadata.get("usage", {})
        self.answer_usage = self.answer_usage + Usage(
            int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        )
        scoring_started = time.perf_counter()
        scores = await gather_all(self._score(m, item, response.answer, contexts) for m in self.metrics)
        timings = dict(response.metadata.get("timings_ms", {}))
        timings["scoring"] = (time.perf_counter() - scoring_started) * 1000.0
        return EvalRow(
            index,
            item,
            response.answer,
            contexts,
            {metric_key(m, self.k): s for m, s in zip(self.metrics, scores, strict=True)},
            timings_ms=timings,
            usage=dict(usage),
        )

    async def _score(
        self, name: str, item: EvalItem, answer: str, contexts: Sequence[RetrievalResult]
    ) -> Score:
        try:
            return await self._measure(name, item, answer, contexts)
        except Unscorable as exc:
            return Score.failed(str(exc))
        except Exception as exc:  # a provider error that outlived its retries, a bug in one metric
            log.debug("%s failed on question %s", name, item.id, exc_info=True)
            return Score.failed(describe(exc))

    async def _measure(
        self, name: str, item: EvalItem, answer: str, contexts: Sequence[RetrievalResult]
    ) -> Score:
        if name in RETRIEVAL_METRICS:
            if not item.has_relevance:
                return Score.skipped("no relevant_ids or relevant_sources")
            ranked, relevance = judged_ranking(item, contexts)
            return Score.scored(_RANKING[name](ranked, relevance, self.k))
        if name == "citation_coverage":
            return Score.scored(citation_coverage(answer, len(contexts)))
        truth = item.ground_truth
        if name in _NEEDS_GROUND_TRUTH and truth is None:
            return Score.skipped("no ground_truth")
        if name == "token_f1" and truth is not None:
            return Score.scored(token_f1(answer, truth))
        if name == "rouge_l" and truth is not None:
            return Score.scored(rouge_l(answer, truth))
        if name == "semantic_similarity" and truth is not None:
            text = strip_citations(answer)
            if not text:
                raise Unscorable("the answer is empty")
            async with self.slots:
                vectors = await self.rag.embedding_model.embed_async([text, truth], input_type="document")
            return Score.scored(cosine(vectors[0], vectors[1]))
        judge = self.judge
        if judge is None:  # select_metrics refuses judged metrics without a judge
            raise Unscorable("no LLM judge configured")
        texts = [c.text for c in contexts]
        if name == "faithfulness":
            value, details = await judge.faithfulness(item.question, answer, texts)
        elif name == "answer_relevancy":
            value, details = await judge.answer_relevancy(item.question, answer)
        elif name == "context_precision":
            reference, kind = (truth, "ground_truth") if truth is not None else (answer, "answer")
            value, details = await judge.context_precision(
                item.question, texts, strip_citations(reference), reference_kind=kind
            )
        elif name == "context_recall" and truth is not None:
            value, details = await judge.context_recall(item.question, texts, truth)
        else:
            raise InvalidInputError(f"unknown metric {name!r}")
        return Score.scored(value, details)


async def evaluate_async(
    rag: AgenticRAG,
    dataset: Dataset,
    *,
    metrics: Sequence[str] | None = None,
    concurrency: int = 8,
    k: int = 5,
    judge_llm: LLM | None = None,
    progress: Progress | None = None,
    name: str | None = None,
) -> EvalResult:
    """Answer every question of `dataset` with `rag` and score the answers; failures are counted, not raised.

    `dataset`: a JSONL path (see `mini.eval.dataset`) or a list of `EvalItem`s, dicts or question strings.
    `metrics`: names or groups (see `select_metrics`); default all that apply. `k`: cut-off of the retrieval
    metrics over the contexts the RAG answered from. `judge_llm`: the judge (default `rag.llm`).
    `progress(row)` is called as each row finishes. `name` labels the dataset in reports (default: the file
    name). Invalid input raises before any request is made.
    """
    at_least(1, concurrency=concurrency, k=k)
    judge_model = judge_llm if judge_llm is not None else rag.llm
    chosen = select_metrics(metrics, has_judge=judge_model is not None)
    if isinstance(dataset, str | Path):
        items = await asyncio.to_thread(as_items, dataset)
    else:
        items = as_items(dataset)
    slots = asyncio.Semaphore(concurrency)
    judge = Judge(judge_model, rag.embedding_model, slots=slots) if judge_model is not None else None
    evaluation = _Evaluation(rag, judge, chosen, k, slots)

    async def one(index: int, item: EvalItem) -> EvalRow:
        row = await evaluation.row(index, item)
        if progress is not None:
            progress(row)
        return row

    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    started = time.perf_counter()
    rows = await gather_all((one(i, item) for i, item in enumerate(items, start=1)), limit=concurrency)
    wall = time.perf_counter() - started
    settings = {
        "dataset": name or (Path(dataset).name if isinstance(dataset, str | Path) else f"{len(items)} items"),
        "questions": len(items),
        "llm": rag.llm_name,
        "judge": judge.name if judge is not None else None,
        "embedding_model": rag.embedding_model.name,
        "store": repr(rag.vector_store),
        "k": k,
        "concurrency": concurrency,
        "started_at": started_at,
    }
    usage = {"answers": evaluation.answer_usage.as_dict()}
    if judge is not None:
        usage["judge"] = judge.usage.as_dict()
    return EvalResult(
        rows=rows,
        metrics=[metric_key(m, k) for m in chosen],
        settings=settings,
        timings=timing_summary(rows, wall),
        usage=usage,
    )


def timing_summary(rows: Sequence[EvalRow], wall_s: float) -> dict[str, float]:
    """Wall time, and summed/averaged per-answer stage times: retrieval is rewrite + embed + search + rerank.

    Sums exceed the wall time when answers overlap: that is the point of running them concurrently.
    """
    answered = [row.timings_ms for row in rows if row.error is None]
    retrieval = [sum(t.get(stage, 0.0) for stage in _STAGES_BEFORE_ANSWER) for t in answered]
    generation = [t.get("generate", 0.0) for t in answered]
    totals = [t.get("total", 0.0) for t in answered]
    return {
        "total_s": wall_s,
        "answers": float(len(answered)),
        "retrieval_s": sum(retrieval) / 1000.0,
        "generation_s": sum(generation) / 1000.0,
        "scoring_s": sum(t.get("scoring", 0.0) for t in answered) / 1000.0,
        "avg_answer_ms": mean(totals),
        "avg_retrieval_ms": mean(retrieval),
        "avg_generation_ms": mean(generation),
    }


evaluate = _portal.sync_twin(evaluate_async)
