"""The `mini` command (typer). Each command runs one async main under `asyncio.run`: the only place it is used."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from mini.ingest.pipeline import IngestReport
    from mini.query.pipeline import AgenticRAG
    from mini.types import RAGResponse

app = typer.Typer(
    name="mini",
    help="Mini RAG: ingest documents and answer questions about them, offline by default.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

UriOpt = Annotated[
    str | None, typer.Option("--uri", help="Store location (default ./mini_data or MINI_URI).")
]
CollectionOpt = Annotated[str | None, typer.Option("--collection", help="Collection name (default docs).")]
EmbeddingOpt = Annotated[
    str | None,
    typer.Option("--embedding-model", help="e.g. local:all-MiniLM-L6-v2 (default) or openai:MODEL."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _build_rag(
    uri: str | None, collection: str | None, embedding_model: str | None, llm: str | None
) -> AgenticRAG:
    from mini import AgenticRAG, EmbeddingModel, LLMConfig, VectorStore

    # LLMConfig(model="none") forces offline answers even when OPENAI_API_KEY is set.
    llm_config = LLMConfig(model=llm) if llm is not None else None
    return AgenticRAG(
        VectorStore(uri, collection_name=collection),
        EmbeddingModel(embedding_model),
        llm_config=llm_config,
    )


def _display_source(source: str) -> str:
    """Paths relative to the working directory when they are below it: shorter and still unambiguous."""
    path, sep, fragment = source.partition("#")
    try:
        shown = str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        shown = path
    return shown + sep + fragment


def _run(main: Any) -> Any:
    from mini.errors import MiniError

    try:
        return asyncio.run(main)
    except MiniError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None


def _print_report(report: IngestReport) -> None:
    total_s = report.timings_ms.get("total", 0.0) / 1000.0
    out.print(
        f"Indexed {report.files_seen} file(s) in {total_s:.2f}s: {report.files_added} added, "
        f"{report.files_updated} updated, {report.files_skipped} unchanged, {report.files_failed} failed; "
        f"{report.chunks_added} chunks added, {report.chunks_removed} removed, {report.chunks_unchanged} unchanged."
    )
    for failure in report.failures:
        err.print(f"[red]failed:[/] {escape(_display_source(failure.path))}: {escape(failure.reason)}")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories to index.")],
    uri: UriOpt = None,
    collection: CollectionOpt = None,
    embedding_model: EmbeddingOpt = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Files processed at once.")] = 4,
    glob: Annotated[str | None, typer.Option(help="Only files matching this pattern, e.g. '*.md'.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Index files (txt, md, html, pdf, docx, json, jsonl); re-running skips unchanged files."""

    async def main() -> IngestReport:
        rag = _build_rag(uri, collection, embedding_model, "none")
        async with rag:
            return await rag.index_documents_async(list(paths), concurrency=concurrency, glob=glob)

    report = _run(main())
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report)
    if report.files_failed:
        raise typer.Exit(1)


def _print_response(response: RAGResponse) -> None:
    out.print(escape(response.answer))
    if response.retrieved_chunks:
        out.print("\n[bold]Sources[/]")
        cited = {c.number for c in response.citations}
        for number, hit in enumerate(response.retrieved_chunks, start=1):
            marker = "*" if number in cited else " "
            where = _display_source(hit.source)
            page = hit.metadata.get("page")
            if page is not None:
                where += f", page {page}"
            out.print(f"{marker}[{number}] {escape(where)} (score {hit.score:.3f})")
    timings = response.metadata.get("timings_ms", {})
    stages = ", ".join(f"{k} {v:.0f}" for k, v in timings.items() if k != "total" and v >= 0.5)
    kind = response.metadata.get("answer_type", "")
    how = "offline, extractive" if kind == "extractive" else f"{kind}, {response.metadata.get('llm')}"
    out.print(f"[dim]answer: {how}; {timings.get('total', 0):.0f} ms ({stages})[/]")


@app.command()
def query(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    uri: UriOpt = None,
    collection: CollectionOpt = None,
    embedding_model: EmbeddingOpt = None,
    llm: Annotated[
        str | None,
        typer.Option(
            help="openai:MODEL (with OPENAI_API_KEY / OPENAI_BASE_URL), or 'none' for offline answers."
        ),
    ] = None,
    top_k: Annotated[int | None, typer.Option(min=1, help="Chunks retrieved per query.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question from the indexed documents, with numbered sources."""

    async def main() -> RAGResponse:
        rag = _build_rag(uri, collection, embedding_model, llm)
        async with rag:
            return await rag.query_async(question, top_k=top_k)

    response = _run(main())
    if as_json:
        print(json.dumps(response.to_dict(), indent=2, default=str))
    else:
        _print_response(response)


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Show the version and exit.")] = False,
) -> None:
    if version:
        from mini import __version__

        out.print(f"mini-rag {__version__}")
        raise typer.Exit()


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # `mini query ... | head`
        sys.stderr.close()


if __name__ == "__main__":
    main()
