"""`mini eval ...`: retrieval benchmarks on BEIR-format datasets."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from mini.cli.common import EmbeddingOpt, JsonOpt, build_rag, err, numbers_table, out, run

if TYPE_CHECKING:
    from mini.eval.beir import BeirReport
    from mini.query.retrieval import Mode
    from mini.rag import AgenticRAG

eval_app = typer.Typer(help="Measure retrieval and answer quality.", no_args_is_help=True)


@eval_app.command("beir")
def beir(
    path: Annotated[
        Path, typer.Argument(help="A BEIR dataset directory: corpus.jsonl, queries.jsonl, qrels/.")
    ],
    mode: Annotated[
        list[str] | None,
        typer.Option("--mode", help="dense, keyword or hybrid; repeat for several (default: all three)."),
    ] = None,
    k: Annotated[int, typer.Option("--k", min=1, help="Cut-off for nDCG and MRR.")] = 10,
    split: Annotated[str, typer.Option(help="Which qrels file to score: test, dev, train.")] = "test",
    concurrency: Annotated[int, typer.Option(min=1, help="Queries in flight.")] = 16,
    rewrite: Annotated[
        bool, typer.Option(help="Search LLM rewrites of each query too (needs --llm or MINI_LLM).")
    ] = False,
    uri: Annotated[
        str | None, typer.Option("--uri", help="Store for the corpus (default ./mini_data or MINI_URI).")
    ] = None,
    collection: Annotated[
        str | None, typer.Option("--collection", help="Collection for the corpus (default beir_<dataset>).")
    ] = None,
    embedding_model: EmbeddingOpt = None,
    llm: Annotated[
        str | None, typer.Option(help="Chat model for --rewrite, e.g. openai:gpt-4o-mini.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Index a BEIR dataset (once; re-runs skip it) and score retrieval: nDCG@k, recall@100, MRR@k."""
    from mini.query.retrieval import MODES

    unknown = [m for m in mode or [] if m not in MODES]
    if unknown:
        err.print(f"[bold red]error:[/] unknown mode {unknown[0]!r}; choose from {', '.join(MODES)}")
        raise typer.Exit(2)
    modes = [m for m in MODES if m in mode] if mode else list(MODES)
    name = collection or f"beir_{_collection_part(path.resolve().name)}"
    rag = build_rag(uri, name, embedding_model, llm if rewrite else "none")
    report = run(_beir_main(rag, path, modes, k=k, split=split, concurrency=concurrency, rewrite=rewrite))
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_beir(report)
    if any(r.failures for r in report.results):
        raise typer.Exit(1)


async def _beir_main(
    rag: AgenticRAG, path: Path, modes: list[Mode], *, k: int, split: str, concurrency: int, rewrite: bool
) -> BeirReport:
    from mini.eval.beir import BeirReport, evaluate_mode, ingest_beir, load_beir

    async with rag:
        dataset = await asyncio.to_thread(load_beir, path, split)
        err.print(f"{dataset.name}: {len(dataset.corpus)} documents, {len(dataset.queries)} {split} queries")
        report = await ingest_beir(rag, dataset)
        if report.failures:
            err.print(f"[yellow]note:[/] {report.files_failed} documents failed to index")
        ingest = {
            "added": report.files_added,
            "skipped": report.files_skipped,
            "failed": report.files_failed,
            "chunks_added": report.chunks_added,
            "seconds": round(report.timings_ms.get("total", 0.0) / 1000.0, 2),
        }
        results = [
            await evaluate_mode(rag, dataset, mode, k=k, concurrency=concurrency, rewrite=rewrite)
            for mode in modes
        ]
        config = rag.retrieval_config
        settings = {
            "embedding_model": rag.embedding_model.name,
            "store": repr(rag.vector_store),
            "rewrite": rewrite,
            "rrf_k": config.rrf_k,
            "candidates_per_leg": config.candidates_per_leg,
            "dense_weight": config.dense_weight,
            "keyword_weight": config.keyword_weight,
            "concurrency": concurrency,
        }
        return BeirReport(dataset.name, split, k, len(dataset.corpus), ingest, results, settings)


def _print_beir(report: BeirReport) -> None:
    ingest = report.ingest
    out.print(
        f"[bold]{escape(report.dataset)}[/] ({report.split}): {report.documents} documents "
        f"({ingest['added']} indexed now, {ingest['skipped']} already indexed, {ingest['seconds']} s)"
    )
    names = list(report.results[0].metrics) if report.results else []
    table = numbers_table(["mode", *names, "n", "failed", "wall s", "p50 ms", "p95 ms"])
    for result in report.results:
        t = result.timings
        table.add_row(
            result.mode,
            *(f"{result.metrics.get(n, 0.0):.4f}" for n in names),
            str(result.queries),
            str(len(result.failures)),
            f"{t['wall_s']:.1f}",
            f"{t['p50_ms']:.0f}",
            f"{t['p95_ms']:.0f}",
        )
    out.print(table)
    for result in report.results:
        for failure in result.failures[:5]:
            err.print(
                f"[red]failed:[/] {result.mode} query {failure['query_id']}: {escape(failure['error'])}"
            )


def _collection_part(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)
    return cleaned or "dataset"
