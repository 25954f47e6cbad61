"""The `mini` command (typer). Each command runs one async main through `mini.cli.common.run`, the only caller of
`asyncio.run`."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from mini.cli.batch import (
    OrderedOutput,
    Stopwatch,
    profile_table,
    read_questions,
    responses_of,
    run_batch,
    show_json_line,
    show_result,
    summary_line,
)
from mini.cli.common import (
    CollectionOpt,
    EmbeddingOpt,
    JsonOpt,
    UriOpt,
    build_rag,
    display_source,
    err,
    out,
    progress_bar,
    run,
    start_tracing,
)
from mini.cli.eval import eval_app
from mini.cli.eval_run import eval_run as _eval_run  # noqa: F401  (registers `mini eval run` on eval_app)

if TYPE_CHECKING:
    from mini.ingest.pipeline import IngestProgress, IngestReport
    from mini.query.pipeline import AgenticRAG
    from mini.types import RAGResponse

app = typer.Typer(
    name="mini",
    help="Mini RAG: ingest documents and answer questions about them, offline by default.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_report(report: IngestReport) -> None:
    total_s = report.timings_ms.get("total", 0.0) / 1000.0
    pruned = f", {report.files_pruned} pruned" if report.files_pruned else ""
    out.print(
        f"Indexed {report.files_seen} file(s) in {total_s:.2f}s: {report.files_added} added, "
        f"{report.files_updated} updated, {report.files_skipped} unchanged, {report.files_failed} failed{pruned}; "
        f"{report.chunks_added} chunks added, {report.chunks_removed} removed, {report.chunks_unchanged} unchanged; "
        f"{report.chunks_embedded} embedded in {report.embedding_requests} request(s)."
    )
    for warning in report.warnings:
        err.print(f"[yellow]note:[/] {escape(display_source(warning.path))}: {escape(warning.reason)}")
    for failure in report.failures:
        err.print(f"[red]failed:[/] {escape(display_source(failure.path))}: {escape(failure.reason)}")
    if report.interrupted:
        err.print(
            "[yellow]interrupted:[/] files written so far are complete; run the same command to resume."
        )


class _IngestBars:
    """Three rich progress bars (files, chunks embedded, chunks written) fed by the ingestor's snapshots.

    Snapshots arrive on the event loop's thread and only overwrite totals, so bars stay consistent however
    many files and batches are in flight; rich redraws from its own thread at a fixed rate.
    """

    def __init__(self) -> None:
        self.progress = progress_bar("{task.description:<9}")
        self.files = self.progress.add_task("files", total=None, note="")
        self.embedded = self.progress.add_task("embedded", total=None, note="")
        self.written = self.progress.add_task("written", total=None, note="")

    def __call__(self, snapshot: IngestProgress) -> None:
        failed = f"{snapshot.files_failed} failed" if snapshot.files_failed else ""
        self.progress.update(
            self.files, completed=snapshot.files_done, total=snapshot.files_total, note=failed
        )
        chunks = snapshot.chunks_total or None
        requests = f"{snapshot.embedding_requests} requests"
        self.progress.update(self.embedded, completed=snapshot.chunks_embedded, total=chunks, note=requests)
        self.progress.update(self.written, completed=snapshot.chunks_written, total=chunks, note="")


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Files, directories or http(s) URLs to index.")],
    uri: UriOpt = None,
    collection: CollectionOpt = None,
    embedding_model: EmbeddingOpt = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Embedding requests in flight (default 8).")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Texts per embedding request (default 64).")
    ] = None,
    glob: Annotated[str | None, typer.Option(help="Only files matching this pattern, e.g. '*.md'.")] = None,
    prune: Annotated[
        bool, typer.Option(help="Delete indexed files under the given directories that no longer exist.")
    ] = False,
    progress: Annotated[
        bool | None, typer.Option(help="Progress bars on stderr (default: when it is a terminal).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Index files (txt, md, html, pdf, docx, json, jsonl) and URLs; re-running skips unchanged files and
    resumes an interrupted run."""
    show = progress if progress is not None else (err.is_terminal and not as_json)
    bars = _IngestBars() if show else None
    rag = build_rag(uri, collection, embedding_model, "none")  # no I/O until used
    ingestor = rag.ingestor(concurrency=concurrency, batch_size=batch_size)

    async def main() -> IngestReport:
        async with rag:
            return await ingestor.run(paths, glob=glob, prune=prune, progress=bars)

    try:
        if bars is not None:
            with bars.progress:
                report = run(main())
        else:
            report = run(main())
    except typer.Exit as stop:
        if stop.exit_code == 130 and ingestor.report is not None:
            # Ctrl-C: say what was finished, so the user knows a re-run resumes from there.
            _emit_report(ingestor.report, as_json)
        raise
    _emit_report(report, as_json)
    if report.files_failed:
        raise typer.Exit(1)


def _emit_report(report: IngestReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report)


def _print_response(response: RAGResponse) -> None:
    out.print(escape(response.answer))
    if response.retrieved_chunks:
        out.print("\n[bold]Sources[/]")
        cited = {c.number for c in response.citations}
        for number, hit in enumerate(response.retrieved_chunks, start=1):
            marker = "*" if number in cited else " "
            where = display_source(hit.source)
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
    question: Annotated[str | None, typer.Argument(help="The question to answer (or use --file).")] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Answer every question in this file: one per line, or .jsonl objects."),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="With --file: questions in flight.")] = 8,
    jsonl: Annotated[
        Path | None, typer.Option("--jsonl", help="With --file: also write each result as a JSON line here.")
    ] = None,
    profile: Annotated[
        bool, typer.Option("--profile", help="Print where the time went per stage, and the I/O wait share.")
    ] = False,
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
    """Answer a question (or a file of them, concurrently) from the indexed documents, with numbered sources."""
    if (question is None) == (file is None):
        err.print("[bold red]error:[/] give a question or --file, not both")
        raise typer.Exit(2)
    rag = build_rag(uri, collection, embedding_model, llm)
    if file is not None:
        _query_file(
            rag, file, concurrency=concurrency, jsonl=jsonl, top_k=top_k, as_json=as_json, profile=profile
        )
        return
    assert question is not None

    async def main() -> RAGResponse:
        async with rag:
            return await rag.query_async(question, top_k=top_k)

    watch = Stopwatch()
    response = run(main())
    if as_json:
        print(json.dumps(response.to_dict(), indent=2, default=str))
    else:
        _print_response(response)
    if profile:
        wall, cpu = watch.read()
        total_ms = response.metadata.get("timings_ms", {}).get("total", wall * 1000)
        _print_profile(profile_table([response], wall_s=wall, cpu_s=cpu, elapsed_ms=[total_ms]))


def _print_profile(profile: tuple[Table, str]) -> None:
    table, summary = profile
    err.print(table)
    err.print(summary, soft_wrap=True)


def _query_file(
    rag: AgenticRAG,
    file: Path,
    *,
    concurrency: int,
    jsonl: Path | None,
    top_k: int | None,
    as_json: bool,
    profile: bool,
) -> None:
    from mini.errors import MiniError

    try:
        questions = read_questions(file)
    except MiniError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    show = show_json_line if as_json else show_result(len(questions), _print_response)
    progress = progress_bar("questions")
    task = progress.add_task("questions", total=len(questions), note="")
    sink = jsonl.open("w", encoding="utf-8") if jsonl is not None else None
    output = OrderedOutput(len(questions), show, sink)
    watch = Stopwatch()
    interrupted = False
    try:
        with progress if err.is_terminal else nullcontext():
            run(
                run_batch(
                    rag,
                    questions,
                    output,
                    concurrency=concurrency,
                    top_k=top_k,
                    on_result=lambda _: progress.advance(task),
                )
            )
    except typer.Exit as stop:
        interrupted = stop.exit_code == 130
        if not interrupted:
            raise
    finally:
        output.flush_finished()  # answers that finished after an unfinished earlier one
        if sink is not None:
            sink.close()
    wall, cpu = watch.read()
    err.print(summary_line(output.results, wall) + (" (interrupted)" if interrupted else ""))
    if profile:
        elapsed = [r.elapsed_ms for r in output.results]
        _print_profile(
            profile_table(responses_of(output.results), wall_s=wall, cpu_s=cpu, elapsed_ms=elapsed)
        )
    if interrupted:
        raise typer.Exit(130)
    if any(not r.ok for r in output.results):
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="Interface to listen on (0.0.0.0 for all; set MINI_API_KEYS then).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    uri: UriOpt = None,
    collection: CollectionOpt = None,
    embedding_model: EmbeddingOpt = None,
    llm: Annotated[
        str | None, typer.Option(help="openai:MODEL, anthropic:MODEL, bedrock:MODEL_ID, or 'none' (offline).")
    ] = None,
) -> None:
    """Serve the HTTP API (and a chat page at /) with uvicorn: streaming answers with citations."""
    try:
        import uvicorn

        from mini.server import create_app
    except ImportError as exc:
        err.print(
            f"[bold red]error:[/] the server needs the server extra: pip install 'mini-rag[server]' ({exc})"
        )
        raise typer.Exit(1) from None
    rag = build_rag(uri, collection, embedding_model, llm)
    start_tracing()
    out.print(f"Mini RAG on http://{host}:{port}  (API docs: /docs, chat page: /)")
    # uvicorn runs the event loop and handles Ctrl-C (graceful shutdown runs the app's lifespan exit).
    uvicorn.run(create_app(rag), host=host, port=port, log_level="info", timeout_graceful_shutdown=10)


app.add_typer(eval_app, name="eval")


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Show the version and exit.")] = False,
) -> None:
    if version:
        from mini._version import __version__

        out.print(f"mini-rag {__version__}")
        raise typer.Exit()


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # `mini query ... | head`
        sys.stderr.close()


if __name__ == "__main__":
    main()
