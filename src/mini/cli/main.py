"""The `mini` command (typer). Each command runs one async main through `mini.cli.common.run`, the only caller of
`asyncio.run`."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
    FilterOpt,
    JsonOpt,
    LLMOpt,
    ModeOpt,
    RerankOpt,
    RewriteOpt,
    TopKOpt,
    UriOpt,
    build_rag,
    display_source,
    err,
    fail,
    filters_or_exit,
    load_settings_or_exit,
    out,
    progress_bar,
    rag_from_settings,
    run,
    settings_flags,
    start_tracing,
)
from mini.cli.config_cmd import config as _config_command
from mini.cli.docs import docs_app
from mini.cli.eval import eval_app
from mini.cli.eval_run import eval_run as _eval_run  # noqa: F401  (registers `mini eval run` on eval_app)
from mini.cli.mcp_cmd import mcp as _mcp_command
from mini.cli.models import models_app
from mini.cli.stream import chat as _chat_command
from mini.cli.stream import print_response, stream_answer

if TYPE_CHECKING:
    from mini.ingest.pipeline import IngestProgress, IngestReport
    from mini.rag import AgenticRAG
    from mini.server.settings import ServerSettings
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
    refuse_private_urls: Annotated[
        bool,
        typer.Option(
            "--refuse-private-urls",
            help="Refuse URLs (and redirects) leading to loopback, private, link-local or other non-public "
            "addresses, like the server does. Default: any address (your own intranet).",
        ),
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Read, parse, chunk and (local model) embed files on a Ray cluster ('auto': RAY_ADDRESS or "
            "the local one); needs the 'ray' extra.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Index files (txt, md, html, pdf, docx, json, jsonl) and URLs; re-running skips unchanged files and
    resumes an interrupted run."""
    show = progress if progress is not None else (err.is_terminal and not as_json)
    bars = _IngestBars() if show else None
    # No I/O until used. Offline and without a reranker: ingestion needs neither, and a configured llm
    # reranker must not stop it.
    rag = build_rag(uri, collection, embedding_model, "none", reranker="none")
    policy = None
    if refuse_private_urls:
        from mini.ingest.netguard import FetchPolicy

        policy = FetchPolicy.refusing(hint="--refuse-private-urls is on")
    ingestor = rag.ingestor(concurrency=concurrency, batch_size=batch_size, fetch_policy=policy)
    if ray_address is not None:
        from mini.ingest.ray_executor import RayExecutor

        ingestor.executor = RayExecutor(ray_address)
    _load_store_writer(rag)

    async def main() -> IngestReport:
        async with rag:
            try:
                return await ingestor.run(paths, glob=glob, prune=prune, progress=bars)
            finally:
                if ingestor.executor is not None:
                    await ingestor.executor.aclose()

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


def _load_store_writer(rag: AgenticRAG) -> None:
    """LanceDB writes go through the `lancedb` package, 1.5-2 s of imports that reads no longer pay
    (mini.stores.lancedb.native). A command that writes imports it before its work starts, as it always did,
    rather than in a worker thread while its first commit waits (an interrupted ingestion would then have
    written nothing)."""
    from mini import _registry

    if rag.vector_store.uri is not None and _registry.store_kind(rag.vector_store.uri) == "lancedb":
        import lancedb  # noqa: F401


def _emit_report(report: IngestReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report)


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
    llm: LLMOpt = None,
    mode: ModeOpt = None,
    rerank: RerankOpt = None,
    top_k: TopKOpt = None,
    rewrite: RewriteOpt = None,
    filters: FilterOpt = None,
    show_context: Annotated[
        bool, typer.Option("--show-context", help="Print the retrieved passages before the answer.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question (or a file of them, concurrently) from the indexed documents, with numbered sources.

    On a terminal the answer streams as it is written; piped or with --json it is printed whole."""
    if (question is None) == (file is None):
        fail("give a question or --file, not both")
    spec = filters_or_exit(filters)  # before any I/O: a malformed filter is bad input
    rag = build_rag(**settings_flags(uri, collection, embedding_model, llm, mode, rerank, top_k, rewrite))
    if file is not None:
        _query_file(
            rag,
            file,
            concurrency=concurrency,
            jsonl=jsonl,
            top_k=top_k,
            filter=spec,
            as_json=as_json,
            profile=profile,
        )
        return
    assert question is not None
    # --top-k also goes per question, as before: it then bounds the chunks answered from (rerank_top_k) too.
    if sys.stdout.isatty() and not as_json and not profile:

        async def stream() -> None:
            async with rag:
                await stream_answer(rag, question, top_k=top_k, filter=spec, show_context=show_context)

        run(stream())
        return

    async def main() -> RAGResponse:
        async with rag:
            return await rag.query_async(question, top_k=top_k, filter=spec)

    watch = Stopwatch()
    response = run(main())
    if as_json:
        print(json.dumps(response.to_dict(), indent=2, default=str))
    else:
        print_response(response, show_context=show_context)
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
    filter: Mapping[str, Any] | None,
    as_json: bool,
    profile: bool,
) -> None:
    from mini.errors import MiniError

    try:
        questions = read_questions(file)
    except MiniError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    show = show_json_line if as_json else show_result(len(questions), print_response)
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
                    filter=filter,
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
        str,
        typer.Option(
            help="Interface to listen on. Without MINI_API_KEYS only a loopback one (else --insecure-no-auth)."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    uri: UriOpt = None,
    collection: CollectionOpt = None,
    embedding_model: EmbeddingOpt = None,
    llm: LLMOpt = None,
    mode: ModeOpt = None,
    rerank: RerankOpt = None,
    top_k: TopKOpt = None,
    rewrite: RewriteOpt = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth",
            help="Serve a non-loopback --host without MINI_API_KEYS (anyone reaching it can change the index).",
        ),
    ] = False,
) -> None:
    """Serve the HTTP API (and a chat page at /) with uvicorn: streaming answers with citations.

    The flags set the server-wide defaults; each request may still pass its own top_k, filter and mode.
    A filter is per request only (there is no server-wide default filter)."""
    try:
        import uvicorn

        from mini.ingest.netguard import is_loopback
        from mini.server import create_app
    except ImportError as exc:
        err.print(
            f"[bold red]error:[/] the server needs the server extra: pip install 'mini-rag[server]' ({exc})"
        )
        raise typer.Exit(1) from None
    settings = _server_settings_or_exit()
    if not settings.keys() and not is_loopback(host):
        if not insecure_no_auth:
            fail(
                f"--host {host} is reachable from other machines and MINI_API_KEYS is not set: set MINI_API_KEYS "
                "(or pass --insecure-no-auth to serve without authentication)"
            )
        err.print(
            f"[bold yellow]warning:[/] serving {escape(host)} WITHOUT AUTHENTICATION (--insecure-no-auth): anyone "
            f"who can reach port {port} can read and change the index",
            soft_wrap=True,
        )
    config = load_settings_or_exit(
        **settings_flags(uri, collection, embedding_model, llm, mode, rerank, top_k, rewrite)
    )
    if settings.redis_url is None and config.redis_url:  # ServerSettings reads the environment and .env only
        settings = settings.model_copy(update={"redis_url": config.redis_url})
    if settings.redis_url:
        from mini._limits import share_limits

        share_limits(settings.redis_url)  # before the models are built: their limiters are bound then
    rag = rag_from_settings(config)
    start_tracing()
    out.print(f"Mini RAG on http://{host}:{port}  (API docs: /docs, chat page: /)")
    # uvicorn runs the event loop and handles Ctrl-C (graceful shutdown runs the app's lifespan exit).
    served = create_app(rag, settings=settings)
    uvicorn.run(served, host=host, port=port, log_level="info", timeout_graceful_shutdown=10)


def _server_settings_or_exit() -> ServerSettings:
    """The server's MINI_* settings; a malformed one ends the command with one line naming it (exit 2)."""
    from pydantic import ValidationError

    from mini.server.settings import ServerSettings

    try:
        return ServerSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "MINI_" + "_".join(str(part) for part in first["loc"]).upper()
        fail(f"{name}: {first['msg']} (got {first.get('input')!r})")


app.command("config")(_config_command)
app.command("chat")(_chat_command)
app.command("mcp")(_mcp_command)
app.add_typer(eval_app, name="eval")
app.add_typer(docs_app, name="docs")
app.add_typer(models_app, name="models")


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
