"""What an evaluation returns: per-row scores (scored, failed with a reason, or skipped), the summary that
averages only scored rows and states n, timings, and the JSON / Markdown / HTML renderings."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mini.eval.dataset import EvalItem
from mini.eval.metrics import mean
from mini.types import RetrievalResult

Status = Literal["scored", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class Score:
    """One metric on one row. `value` is set only when scored; `reason` says why it failed or was skipped
    (skipped: the row lacks what the metric needs, like a ground truth). `details` holds the judge's work."""

    status: Status
    value: float | None = None
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def scored(cls, value: float, details: Mapping[str, Any] | None = None) -> Score:
        return cls("scored", float(value), "", dict(details or {}))

    @classmethod
    def failed(cls, reason: str, details: Mapping[str, Any] | None = None) -> Score:
        return cls("failed", None, reason, dict(details or {}))

    @classmethod
    def skipped(cls, reason: str) -> Score:
        return cls("skipped", None, reason)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status}
        if self.value is not None:
            data["value"] = round(self.value, 6)
        if self.reason:
            data["reason"] = self.reason
        if self.details:
            data["details"] = dict(self.details)
        return data


@dataclass(frozen=True, slots=True)
class EvalRow:
    """One question's outcome. `error` is set when no answer was produced (then every metric failed)."""

    index: int  # 1-based position in the dataset
    item: EvalItem
    answer: str | None
    contexts: tuple[RetrievalResult, ...]
    scores: dict[str, Score]
    error: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)

    @property
    def question(self) -> str:
        return self.item.question

    @property
    def failures(self) -> dict[str, str]:
        """Failed metrics and why."""
        return {name: s.reason for name, s in self.scores.items() if s.status == "failed"}

    @property
    def status(self) -> Literal["scored", "failed"]:
        return "failed" if self.error is not None or self.failures else "scored"

    @property
    def values(self) -> dict[str, float]:
        """The scored metrics' values."""
        return {name: s.value for name, s in self.scores.items() if s.value is not None}

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            **self.item.to_dict(),
            "status": self.status,
            "error": self.error,
            "answer": self.answer,
            "contexts": [
                {"id": c.id, "source": c.source, "score": round(c.score, 6), "text": c.text}
                for c in self.contexts
            ],
            "scores": {name: score.to_dict() for name, score in self.scores.items()},
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            "usage": self.usage,
        }


@dataclass(frozen=True, slots=True)
class MetricSummary:
    """A metric over the rows: the mean of the `n` scored rows; failed and skipped rows are counted apart."""

    mean: float | None  # None when no row scored
    n: int
    failed: int
    skipped: int

    def to_dict(self) -> dict[str, Any]:
        value = round(self.mean, 6) if self.mean is not None else None
        return {"mean": value, "n": self.n, "failed": self.failed, "skipped": self.skipped}


@dataclass(frozen=True)
class EvalResult:
    """`evaluate_async`'s result: `rows` in dataset order, `summary` per metric, `timings`, `settings`."""

    rows: list[EvalRow]
    metrics: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    usage: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, MetricSummary]:
        out = {}
        for name in self.metrics:
            scores = [row.scores[name] for row in self.rows if name in row.scores]
            values = [s.value for s in scores if s.value is not None]
            out[name] = MetricSummary(
                mean=mean(values) if values else None,
                n=len(values),
                failed=sum(s.status == "failed" for s in scores),
                skipped=sum(s.status == "skipped" for s in scores),
            )
        return out

    @property
    def failed_rows(self) -> list[EvalRow]:
        return [row for row in self.rows if row.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "summary": {name: s.to_dict() for name, s in self.summary.items()},
            "rows_total": len(self.rows),
            "rows_failed": len(self.failed_rows),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "usage": self.usage,
            "rows": [row.to_dict() for row in self.rows],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, default=str)

    def to_html(self) -> str:
        """A self-contained page: summary, timings, a chart per metric, every row with answer and contexts."""
        from mini.eval.report import render_html

        return render_html(self)

    def to_markdown(self) -> str:
        """The summary and timings as Markdown tables (what the CLI prints, for pasting)."""
        from mini.eval.report import render_markdown

        return render_markdown(self)
