"""Render an `EvalResult` as a self-contained HTML page (inline CSS and SVG, no scripts, nothing fetched) or as
Markdown tables. Pure: strings in, strings out. All user text (questions, answers, contexts) is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mini.eval.results import EvalResult, EvalRow, MetricSummary, Score

BINS = 10
_CSS = """
:root { color-scheme: light; --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --bar: #3b6fd1; }
* { box-sizing: border-box; }
body { font: 14px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); margin: 0;
       padding: 24px clamp(12px, 4vw, 48px); max-width: 1280px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.meta, .muted { color: var(--muted); }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { font-weight: 600; background: #f6f8fa; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.meanbar { display: inline-block; height: 8px; background: var(--bar); border-radius: 2px; margin-left: 6px; }
.status-failed { color: #b42318; font-weight: 600; } .status-scored { color: #1a7f37; }
.timings { display: grid; grid-template-columns: max-content max-content; gap: 2px 16px; margin: 0; }
.timings dt { color: var(--muted); } .timings dd { margin: 0; font-variant-numeric: tabular-nums; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 8px; }
figcaption { font-size: 12px; color: var(--muted); text-align: center; }
svg text { font: 10px system-ui, sans-serif; fill: var(--muted); }
article.row { border: 1px solid var(--line); border-radius: 6px; margin: 8px 0; padding: 0 12px; }
article.row[data-status="failed"] { border-color: #f1aeb5; }
article.row > summary { cursor: pointer; padding: 8px 0; }
.answer, .context-text { white-space: pre-wrap; overflow-wrap: anywhere; }
.answer { background: #f6f8fa; padding: 8px; border-radius: 4px; }
.reason { color: #b42318; } ol.contexts > li { margin-bottom: 6px; }
.scroll { overflow-x: auto; } td.question { min-width: 18em; }
ul.work { margin: 2px 0 4px; padding-left: 18px; color: var(--muted); font-size: 13px; }
.yes { color: #1a7f37; } .no { color: #b42318; }
"""


def render_html(result: EvalResult) -> str:
    settings = result.settings
    summary = result.summary
    failed = len(result.failed_rows)
    meta = " · ".join(
        f"{escape(label)}: {escape(str(settings[key]))}"
        for key, label in (
            ("dataset", "dataset"),
            ("llm", "answers"),
            ("judge", "judge"),
            ("embedding_model", "embeddings"),
            ("k", "k"),
            ("concurrency", "concurrency"),
            ("started_at", "started"),
        )
        if settings.get(key) is not None
    )
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        "<title>Mini RAG evaluation report</title>",
        f"<style>{_CSS}</style></head><body>",
        f'<header><h1>Evaluation report</h1><p class="meta">{meta}</p></header>',
        '<section id="summary" data-testid="summary"><h2>Summary</h2>',
        f"<p>{len(result.rows)} questions: {len(result.rows) - failed} scored, "
        f'<span class="{"status-failed" if failed else ""}">{failed} failed</span>. '
        "Means are over scored rows only (n); failed and skipped rows are counted apart.</p>",
        _summary_table(summary),
        "</section>",
        '<section id="timings" data-testid="timings"><h2>Timings</h2>',
        _timings(result.timings),
        "</section>",
        '<section id="charts" data-testid="chart"><h2>Score distributions</h2><div class="charts">',
        *(_histogram(name, _values(result.rows, name), summary[name]) for name in result.metrics),
        "</div></section>",
        '<section id="rows" data-testid="rows"><h2>Questions</h2>',
        _overview(result),
        *(_row_details(row, result.metrics) for row in result.rows),
        "</section></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _values(rows: Sequence[EvalRow], name: str) -> list[float]:
    return [v for row in rows if (v := row.values.get(name)) is not None]


def _summary_table(summary: dict[str, MetricSummary]) -> str:
    lines = [
        "<table><thead><tr><th>metric</th><th class=num>mean</th><th class=num>n</th>"
        "<th class=num>failed</th><th class=num>skipped</th></tr></thead><tbody>"
    ]
    for name, s in summary.items():
        width = 0 if s.mean is None else round(max(0.0, min(1.0, s.mean)) * 80)
        lines.append(
            f'<tr data-metric="{escape(name)}"><td>{escape(name)}</td>'
            f'<td class=num>{_fmt(s.mean)}<span class="meanbar" style="width:{width}px"></span></td>'
            f"<td class=num>{s.n}</td><td class=num>{s.failed}</td><td class=num>{s.skipped}</td></tr>"
        )
    lines.append("</tbody></table>")
    return "".join(lines)


def timing_lines(timings: dict[str, float]) -> list[tuple[str, str]]:
    answers = int(timings.get("answers", 0))
    return [
        ("total (wall)", f"{timings.get('total_s', 0.0):.2f} s"),
        ("answers", str(answers)),
        ("retrieval (summed)", f"{timings.get('retrieval_s', 0.0):.2f} s"),
        ("generation (summed)", f"{timings.get('generation_s', 0.0):.2f} s"),
        ("average per answer", f"{timings.get('avg_answer_ms', 0.0):.0f} ms"),
        ("scoring (summed)", f"{timings.get('scoring_s', 0.0):.2f} s"),
    ]


def _timings(timings: dict[str, float]) -> str:
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in timing_lines(timings))
    return f'<dl class="timings">{items}</dl>'


def histogram_counts(values: Sequence[float], bins: int = BINS) -> list[int]:
    """Counts per bin of [0, 1]; 1.0 falls in the last bin, values outside [0, 1] in the nearest end bin."""
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, max(0, int(value * bins)))] += 1
    return counts


def _histogram(name: str, values: list[float], summary: MetricSummary) -> str:
    width, height, pad = 220, 110, 18
    counts = histogram_counts(values)
    top = max(counts) or 1
    bar_w = (width - 2 * pad) / BINS
    bars = []
    for i, count in enumerate(counts):
        h = (height - 2 * pad) * count / top
        x, y = pad + i * bar_w, height - pad - h
        label = f"{i / BINS:.1f}–{(i + 1) / BINS:.1f}: {count} row(s)"
        bars.append(
            f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" fill="#3b6fd1">'
            f"<title>{escape(label)}</title></rect>"
        )
    axis_y = height - pad
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(name)} score distribution">'
        f'<line x1="{pad}" y1="{axis_y}" x2="{width - pad}" y2="{axis_y}" stroke="#8c959f"/>'
        + "".join(bars)
        + f'<text x="{pad}" y="{height - 4}" text-anchor="middle">0</text>'
        f'<text x="{width / 2}" y="{height - 4}" text-anchor="middle">0.5</text>'
        f'<text x="{width - pad}" y="{height - 4}" text-anchor="middle">1</text>'
        f'<text x="{pad}" y="11">max {max(counts)}</text></svg>'
    )
    caption = f"{escape(name)}: mean {_fmt(summary.mean)}, n={summary.n}, failed {summary.failed}"
    return f'<figure data-metric="{escape(name)}">{svg}<figcaption>{caption}</figcaption></figure>'


def _cell_style(value: float) -> str:
    hue = round(max(0.0, min(1.0, value)) * 120)
    return f"background:hsl({hue},70%,90%)"


def _overview(result: EvalResult) -> str:
    head = "".join(f"<th class=num>{escape(m)}</th>" for m in result.metrics)
    lines = [
        f'<div class="scroll"><table><thead><tr><th>#</th><th>question</th><th>status</th>{head}</tr></thead><tbody>'
    ]
    for row in result.rows:
        cells = []
        for name in result.metrics:
            score = row.scores.get(name)
            if score is None or score.status == "skipped":
                cells.append('<td class=num title="skipped">–</td>')
            elif score.value is None:
                cells.append(f'<td class="num reason" title="{escape(score.reason)}">failed</td>')
            else:
                cells.append(f'<td class=num style="{_cell_style(score.value)}">{score.value:.2f}</td>')
        lines.append(
            f'<tr><td class=num>{row.index}</td><td class="question"><a href="#row-{row.index}">'
            f"{escape(row.question)}</a></td>"
            f'<td class="status-{row.status}">{row.status}</td>{"".join(cells)}</tr>'
        )
    lines.append("</tbody></table></div>")
    return "".join(lines)


def _row_details(row: EvalRow, metrics: Sequence[str]) -> str:
    parts = [
        f'<article class="row" id="row-{row.index}" data-status="{row.status}" data-testid="row">',
        f"<details><summary><strong>#{row.index}</strong> {escape(row.question)} "
        f'<span class="status-{row.status}">{row.status}</span></summary>',
    ]
    if row.item.ground_truth is not None:
        parts.append(f"<p><strong>Ground truth:</strong> {escape(row.item.ground_truth)}</p>")
    if row.error is not None:
        parts.append(
            f'<p class="reason"><strong>No answer:</strong> {escape(row.error)}</p>'
            '<p class="muted">Every metric of this question failed for this reason.</p>'
        )
    else:
        parts.append(f'<p><strong>Answer:</strong></p><div class="answer">{escape(row.answer or "")}</div>')
        parts.append("<p><strong>Scores:</strong></p><ul>")
        for name in metrics:
            score = row.scores.get(name)
            if score is not None:
                parts.append(f"<li>{escape(name)}: {_score_text(score)}{_work(score.details)}</li>")
        parts.append("</ul>")
    if row.contexts:
        parts.append(f"<p><strong>Contexts ({len(row.contexts)}):</strong></p><ol class=contexts>")
        for chunk in row.contexts:
            source = chunk.source or chunk.id
            short = source.rsplit("/", 1)[-1]
            parts.append(
                f'<li><details><summary><span title="{escape(source)}">{escape(short)}</span> '
                f'<span class="muted">(score {chunk.score:.3f})</span></summary>'
                f'<div class="context-text">{escape(chunk.text)}</div></details></li>'
            )
        parts.append("</ol>")
    parts.append("</details></article>")
    return "".join(parts)


def _score_text(score: Score) -> str:
    if score.status == "skipped":
        return f'<span class="muted">skipped ({escape(score.reason)})</span>'
    if score.value is None:
        return f'<span class="reason">failed: {escape(score.reason)}</span>'
    return f"{score.value:.3f}"


# The judge's work: which list of texts goes with which list of verdicts (or numbers).
_PAIRS = (("statements", "verdicts"), ("sentences", "attributed"), ("questions", "similarities"))


def _work(details: Any) -> str:
    """The judge's work under a score: each statement/sentence/question with its verdict or similarity."""
    if not details:
        return ""
    items = []
    for texts, marks in _PAIRS:
        if isinstance(details.get(texts), list) and isinstance(details.get(marks), list):
            for text, mark in zip(details[texts], details[marks], strict=False):
                if marks == "similarities":
                    items.append(f"{escape(str(text))} <span>(cosine {mark})</span>")
                else:
                    sign = '<span class="yes">✓</span>' if mark else '<span class="no">✗</span>'
                    items.append(f"{sign} {escape(str(text))}")
    if isinstance(details.get("verdicts"), list) and "statements" not in details:
        marks = " ".join(f"{i}{'✓' if v else '✗'}" for i, v in enumerate(details["verdicts"], start=1))
        items.append(
            f"useful contexts: {escape(marks or 'none')} (reference: {escape(str(details.get('reference')))})"
        )
    if details.get("noncommittal") and all(details["noncommittal"]):
        items.append("every generated question was flagged noncommittal: scored 0")
    return f'<ul class="work">{"".join(f"<li>{item}</li>" for item in items)}</ul>' if items else ""


def render_markdown(result: EvalResult) -> str:
    """The summary table, timings and failed rows as Markdown."""
    lines = ["| metric | mean | n | failed | skipped |", "|---|---:|---:|---:|---:|"]
    for name, s in result.summary.items():
        lines.append(f"| {name} | {_fmt(s.mean)} | {s.n} | {s.failed} | {s.skipped} |")
    lines.append("")
    lines.append("| timing | value |")
    lines.append("|---|---:|")
    lines.extend(f"| {label} | {value} |" for label, value in timing_lines(result.timings))
    failed = result.failed_rows
    lines.append("")
    lines.append(f"{len(result.rows)} questions, {len(failed)} failed.")
    for row in failed:
        reason = row.error or "; ".join(f"{m}: {r}" for m, r in row.failures.items())
        lines.append(f"- #{row.index} ({row.item.id}) {row.question}: {reason}")
    return "\n".join(lines) + "\n"
