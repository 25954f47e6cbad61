"""The HTML and Markdown reports as text: self-contained, every user string escaped, failures visible."""

from __future__ import annotations

import re

from mini.eval.dataset import EvalItem
from mini.eval.report import histogram_counts
from mini.eval.results import EvalResult, EvalRow, Score
from mini.types import RetrievalResult

EVIL = '<script>alert("x")</script>'


def _result() -> EvalResult:
    chunk = RetrievalResult("c1", f"context {EVIL}", 0.5, {"source": "/docs/<b>.md"})
    scored = EvalRow(
        1,
        EvalItem(f"question {EVIL}", f"truth {EVIL}", id="1"),
        f"answer {EVIL} [1].",
        (chunk,),
        {
            "token_f1": Score.scored(0.25),
            "faithfulness": Score.scored(1.0, {"statements": [EVIL], "verdicts": [1]}),
        },
        timings_ms={"embed": 10.0, "search": 5.0, "generate": 20.0, "total": 40.0, "scoring": 30.0},
    )
    failed = EvalRow(
        2,
        EvalItem("second?", id="2"),
        None,
        (),
        {"token_f1": Score.failed(f"no answer: {EVIL}"), "faithfulness": Score.failed(f"no answer: {EVIL}")},
        error=f"BadRequestError: {EVIL}",
    )
    skipped = EvalRow(
        3,
        EvalItem("third?", id="3"),
        "an answer",
        (),
        {"token_f1": Score.skipped("no ground_truth"), "faithfulness": Score.scored(0.5)},
    )
    return EvalResult(
        [scored, failed, skipped],
        ["token_f1", "faithfulness"],
        settings={"dataset": f"set {EVIL}", "llm": "sim", "k": 5, "concurrency": 2},
        timings={
            "total_s": 1.5,
            "answers": 2,
            "retrieval_s": 0.015,
            "generation_s": 0.02,
            "avg_answer_ms": 40.0,
        },
    )


def test_summary_averages_scored_rows_and_counts_the_others() -> None:
    summary = _result().summary
    assert summary["token_f1"].to_dict() == {"mean": 0.25, "n": 1, "failed": 1, "skipped": 1}
    assert summary["faithfulness"].to_dict() == {"mean": 0.75, "n": 2, "failed": 1, "skipped": 0}


def test_html_escapes_user_text_and_loads_nothing_from_outside() -> None:
    html = _result().to_html()
    assert "<script" not in html and "alert(&quot;x&quot;)" in html
    assert "/docs/&lt;b&gt;.md" in html
    for attribute in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert attribute.startswith(("#", "data:")), attribute
    assert 'data-testid="summary"' in html and html.count("<figure") == 2 and html.count("<svg") == 2
    assert html.count('data-testid="row"') == 3 and 'data-status="failed"' in html


def test_markdown_lists_the_summary_timings_and_failed_rows() -> None:
    text = _result().to_markdown()
    assert "| token_f1 | 0.250 | 1 | 1 | 1 |" in text and "| faithfulness | 0.750 | 2 | 1 | 0 |" in text
    assert "| average per answer | 40 ms |" in text
    assert "- #2 (2) second?: BadRequestError" in text


def test_histogram_bins_cover_zero_to_one() -> None:
    assert histogram_counts([0.0, 0.05, 0.1, 0.99, 1.0, -0.2, 1.3]) == [3, 1, 0, 0, 0, 0, 0, 0, 0, 3]
