"""`mini eval run QUESTIONS.jsonl`: answer a question set with the configured RAG, score it, write reports."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from mini.cli.common import (
    CollectionOpt,
    EmbeddingOpt,
    JsonOpt,
    UriOpt,
    build_rag,
    err,
    numbers_table,
    out,
    progress_bar,
    run,
)
from mini.cli.eval import eval_app

if TYPE_CHECKING:
    from mini.eval.results import EvalResult, EvalRow
    from mini.rag import AgenticRAG

REPORT_FILES = ("report.json", "report.html", "report.md")


@eval_app.command("run")
def eval_run(
    questions: Annotated[
        Path,
        typer.Argument(
            help="JSONL, one object per line: question, optional ground_truth, relevant_ids, relevant_sources."
        ),
    ],
    concurrency: Annotated[
        int, typer.Option(min=1, help="Questions, and model requests, in flight at once.")
    ] = 8,
    sequential: Annotated[
        bool, typer.Option("--sequential", help="One request at a time (same as --concurrency 1).")
    ] = False,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Directory for report.json, report.html and report.md.")
    ] = Path("eval_report"),
    metrics: Annotated[
        list[str] | None,
        typer.Option(
            "--metrics",
            help="Comma-separated or repeated: hit, mrr, ndcg, recall (retrieval); token_f1, rouge_l, "
            "semantic_similarity, citation_coverage (offline); faithfulness, answer_relevancy, context_precision, "
            "context_recall (llm); or a group name, or all. Default: all that apply (llm ones need an LLM).",
        ),
    ] = None,
    llm: Annotated[
        str | None,
        typer.Option(
            help="Chat model answering and judging, e.g. openai:gpt-4o-mini; 'none' forces offline."
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", min=1, help="Cut-off for hit, MRR, nDCG and recall.")] = 5,
    uri: UriOpt = None,
    collection: CollectionOpt = None,
    embedding_model: EmbeddingOpt = None,
    progress: Annotated[
        bool | None, typer.Option(help="A progress bar on stderr (default: when it is a terminal).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer every question (concurrently), score the answers and their contexts, write the reports.

    Exits 1 if any question failed (the reports are written first).
    """
    width = 1 if sequential else concurrency
    show = progress if progress is not None else (err.is_terminal and not as_json)
    rag = build_rag(uri, collection, embedding_model, llm)
    result = run(_main(rag, questions, metrics=metrics, concurrency=width, k=k, show_progress=show))
    paths = _write_reports(result, out_dir)
    if as_json:
        print(result.to_json())
    else:
        _print_result(result)
    err.print("reports: " + ", ".join(escape(str(p)) for p in paths))
    if result.failed_rows:
        raise typer.Exit(1)


async def _main(
    rag: AgenticRAG,
    questions: Path,
    *,
    metrics: list[str] | None,
    concurrency: int,
    k: int,
    show_progress: bool,
) -> EvalResult:
    from mini.eval.dataset import load_dataset
    from mini.eval.runner import evaluate_async

    items = await asyncio.to_thread(load_dataset, questions)
    bar = _Bar(len(items)) if show_progress else None
    async with rag:
        with bar.progress if bar is not None else contextlib.nullcontext():
            return await evaluate_async(
                rag, items, metrics=metrics, concurrency=concurrency, k=k, progress=bar, name=questions.name
            )


class _Bar:
    """One rich progress bar over the questions, with the failed count."""

    def __init__(self, total: int) -> None:
        self.progress = progress_bar("questions")
        self.task = self.progress.add_task("questions", total=total, note="")
        self.failed = 0

    def __call__(self, row: EvalRow) -> None:
        self.failed += row.status == "failed"
        self.progress.update(self.task, advance=1, note=f"{self.failed} failed" if self.failed else "")


def _write_reports(result: EvalResult, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = (result.to_json(), result.to_html(), result.to_markdown())
    paths = []
    for name, text in zip(REPORT_FILES, texts, strict=True):
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def _print_result(result: EvalResult) -> None:
    from mini.eval.report import timing_lines

    settings = result.settings
    out.print(
        f"[bold]{escape(str(settings.get('dataset')))}[/]: {len(result.rows)} questions, "
        f"answers by {escape(str(settings.get('llm')))}, judge {escape(str(settings.get('judge') or 'none'))}"
    )
    table = numbers_table(["metric", "mean", "n", "failed", "skipped"])
    for name, s in result.summary.items():
        mean = "–" if s.mean is None else f"{s.mean:.3f}"
        failed = f"[red]{s.failed}[/]" if s.failed else "0"
        table.add_row(name, mean, str(s.n), failed, str(s.skipped))
    out.print(table)
    out.print(", ".join(f"{label} {value}" for label, value in timing_lines(result.timings)))
    for row in result.failed_rows[:10]:
        reason = row.error or "; ".join(f"{m}: {r}" for m, r in row.failures.items())
        err.print(f"[red]failed:[/] #{row.index} {escape(row.question)}: {escape(reason)}")
    if len(result.failed_rows) > 10:
        err.print(f"... and {len(result.failed_rows) - 10} more (see report.json)")
    usage = result.usage
    if usage.get("judge"):
        out.print(
            f"[dim]tokens: answers {json.dumps(usage['answers'])}, judge {json.dumps(usage['judge'])}[/]"
        )
