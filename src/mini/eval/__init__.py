"""Evaluation: RAG answer evaluation (`evaluate_async` / `evaluate`: RAGAS-style LLM-judged metrics, offline
text metrics, retrieval metrics; HTML/JSON reports), retrieval metrics (pure), BEIR-format retrieval benchmarks.

Names are imported on first use, so `import mini.eval` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mini._lazy import lazy_attributes

if TYPE_CHECKING:
    from mini.eval.dataset import EvalItem, load_dataset
    from mini.eval.results import EvalResult, EvalRow, MetricSummary, Score
    from mini.eval.runner import ALL_METRICS, evaluate, evaluate_async

__all__ = [
    "ALL_METRICS",
    "EvalItem",
    "EvalResult",
    "EvalRow",
    "MetricSummary",
    "Score",
    "evaluate",
    "evaluate_async",
    "load_dataset",
]

_WHERE = {
    "ALL_METRICS": "runner",
    "evaluate": "runner",
    "evaluate_async": "runner",
    "EvalItem": "dataset",
    "load_dataset": "dataset",
    "EvalResult": "results",
    "EvalRow": "results",
    "MetricSummary": "results",
    "Score": "results",
}

__getattr__ = lazy_attributes(__name__, _WHERE)
