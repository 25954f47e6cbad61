"""How answers are shown on the terminal, whole (`query_async`) or streamed as they are written (`stream_async`),
and `mini chat`, the same streamed answers in a conversation (`rag.conversation()`).

Both paths print the same thing in the same order: the retrieved passages (with `--show-context`), the
answer, the numbered sources (`*` marks the cited ones) and one timing line. Sources are the JSON form every
surface uses (`RetrievalResult.as_source`: number, source, score, text, metadata), so the streamed `sources`
event and a whole response render alike.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from mini.cli.common import (
    CollectionOpt,
    EmbeddingOpt,
    FilterOpt,
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
    out,
    run,
    settings_flags,
)

if TYPE_CHECKING:
    from mini.rag import AgenticRAG
    from mini.types import RAGResponse, StreamEvent


def _where(source: Mapping[str, Any]) -> str:
    where = display_source(str(source.get("source", "")))
    page = (source.get("metadata") or {}).get("page")
    if page is not None:
        where += f", page {page}"
    return where


def print_context(sources: Sequence[Mapping[str, Any]]) -> None:
    """The passages the answer is written from, numbered as the answer cites them."""
    out.print("[bold]Context[/]")
    for source in sources:
        out.print(f"\\[{source['number']}] {escape(_where(source))}", highlight=False)
        for line in str(source.get("text", "")).strip().splitlines():
            out.print("    " + escape(line), highlight=False, soft_wrap=True)
    out.print()


def print_sources(sources: Sequence[Mapping[str, Any]], cited: set[int]) -> None:
    if not sources:
        return
    out.print("\n[bold]Sources[/]")
    for source in sources:
        number = source["number"]
        marker = "*" if number in cited else " "
        out.print(f"{marker}\\[{number}] {escape(_where(source))} (score {float(source['score']):.3f})")


def timing_line(metadata: Mapping[str, Any]) -> str:
    timings = metadata.get("timings_ms", {})
    stages = ", ".join(f"{k} {v:.0f}" for k, v in timings.items() if k != "total" and v >= 0.5)
    kind = metadata.get("answer_type", "")
    how = "offline, extractive" if kind == "extractive" else f"{kind}, {metadata.get('llm')}"
    return f"answer: {how}; {timings.get('total', 0):.0f} ms ({stages})"


def print_response(response: RAGResponse, *, show_context: bool = False) -> None:
    """A whole response: what `mini query` prints when stdout is not a terminal (and for each `--file` answer)."""
    sources = [hit.as_source(n) for n, hit in enumerate(response.retrieved_chunks, start=1)]
    if show_context and sources:
        print_context(sources)
    out.print(escape(response.answer))
    print_sources(sources, {c.number for c in response.citations})
    out.print(f"[dim]{escape(timing_line(response.metadata))}[/]")


class _HeldFailures(logging.Filter):
    """Holds back the pipeline's warnings that carry an exception while an answer streams. A failure that ends
    the stream is printed once, as the command's one error line, so its log record (the same message) is
    dropped; the others (say, a retrieval leg that failed while the answer still came) are logged at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if record.levelno >= logging.WARNING and any(isinstance(a, BaseException) for a in args):
            self.held.append(record)
            return False
        return True

    def release(self, logger: logging.Logger, reported: str | None) -> None:
        for record in self.held:
            args = record.args if isinstance(record.args, tuple) else ()
            if reported is None or not any(isinstance(a, BaseException) and str(a) == reported for a in args):
                logger.handle(record)


@dataclass
class Shown:
    """What a drawn stream left on the screen: its sources, the `done` metadata, or the failure's message."""

    sources: list[Mapping[str, Any]] = field(default_factory=list)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    failure: str | None = None


async def show_stream(events: AsyncIterator[StreamEvent], *, show_context: bool) -> Shown:
    """Draw an answer's events as they arrive: passages (`show_context`), tokens, then sources and timing."""
    logger = logging.getLogger("mini.query")
    held = _HeldFailures()
    logger.addFilter(held)
    shown = Shown()
    try:
        await _draw(events, shown, show_context=show_context)
    finally:
        close = getattr(events, "aclose", None)  # a Ctrl-C or a bug mid-answer closes the LLM stream now
        if close is not None:
            await close()
        logger.removeFilter(held)
        held.release(logger, shown.failure)
    return shown


async def stream_answer(
    rag: AgenticRAG,
    question: str,
    *,
    top_k: int | None,
    filter: Mapping[str, Any] | None,
    show_context: bool,
) -> None:
    """`mini query` on a terminal. An `error` event ends the command: one line on stderr, exit 1 (what was
    already written stays, its line ended)."""
    events = rag.stream_async(question, top_k=top_k, filter=filter)
    shown = await show_stream(events, show_context=show_context)
    if shown.failure is not None:
        fail(shown.failure, 1)


async def _draw(events: AsyncIterator[StreamEvent], shown: Shown, *, show_context: bool) -> None:
    ends_line = True  # the terminal's cursor is at the start of a line
    async for event in events:
        if event.type == "sources":
            shown.sources = list(event.data)
            if show_context and shown.sources:
                print_context(shown.sources)
        elif event.type == "token":
            text = str(event.data)
            # Raw writes, not rich: answer text is not markup, and rich would re-wrap each piece on its own.
            sys.stdout.write(text)
            sys.stdout.flush()
            ends_line = text.endswith("\n") if text else ends_line
        elif event.type == "done":
            if not ends_line:
                sys.stdout.write("\n")
            shown.metadata = event.data.get("metadata", {})
            print_sources(shown.sources, {int(c["number"]) for c in event.data.get("citations", [])})
            out.print(f"[dim]{escape(timing_line(shown.metadata))}[/]")
            return
        elif event.type == "error":
            if not ends_line:  # a partial answer stays on screen, its line ended before the error
                sys.stdout.write("\n")
                sys.stdout.flush()
            data = event.data if isinstance(event.data, Mapping) else {"message": str(event.data)}
            shown.failure = str(data.get("message") or data.get("type") or "the answer failed")
            return
        # `citation` events: the `*` marks come from `done`'s full list, so nothing to draw mid-answer.
    shown.failure = "the answer stream ended without a result"


CHAT_HELP = "/reset forgets the conversation, /sources shows the last answer's passages, Ctrl-D exits."


def chat(
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
        bool, typer.Option("--show-context", help="Print the retrieved passages before each answer.")
    ] = False,
) -> None:
    """Chat with the indexed documents: answers stream with numbered sources, and follow-ups are understood
    with the conversation so far. /reset forgets it, /sources shows the last answer's passages, Ctrl-D exits."""
    spec = filters_or_exit(filters)
    rag = build_rag(**settings_flags(uri, collection, embedding_model, llm, mode, rerank, top_k, rewrite))
    run(_chat(rag, top_k=top_k, filter=spec, show_context=show_context))


async def _chat(
    rag: AgenticRAG, *, top_k: int | None, filter: Mapping[str, Any] | None, show_context: bool
) -> None:
    interactive = sys.stdin.isatty()
    if interactive:
        # Line editing and the up arrow for earlier questions; input() then also writes its prompt to stdout,
        # not to stderr as it does without readline on a terminal.
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401
    async with rag:
        conversation = rag.conversation()
        if interactive:
            out.print(f"[dim]Ask about the indexed documents. {CHAT_HELP}[/]", highlight=False)
        last: Shown | None = None
        while True:
            try:
                # input() blocks the loop between turns on purpose: nothing runs then, and Ctrl-C reaches the
                # main thread at once (a worker thread stuck in input() would keep the process alive).
                line = input("> " if interactive else "")  # noqa: ASYNC250
            except EOFError:  # Ctrl-D, or the end of piped input
                if interactive:
                    out.print()
                return
            message = line.strip()
            if re.fullmatch(r"/[a-z]+", message):  # a command, not a question
                if message in ("/exit", "/quit"):
                    return
                if message == "/reset":
                    conversation.reset()
                    last = None
                    out.print("[dim]The conversation is forgotten; the next question starts afresh.[/]")
                elif message == "/sources" and last is not None and last.sources:
                    print_context(last.sources)
                elif message == "/sources":
                    out.print("[dim]No answer with sources yet.[/]")
                else:
                    out.print(
                        f"[dim]{'' if message == '/help' else f'Unknown command {message}. '}{CHAT_HELP}[/]"
                    )
                continue
            if not message:
                continue
            events = conversation.stream_async(message, top_k=top_k, filter=filter)
            shown = await show_stream(events, show_context=show_context)
            if shown.failure is not None:  # the turn is not kept (see Conversation); the chat goes on
                err.print(f"[bold red]error:[/] {escape(shown.failure)}", soft_wrap=True)
                continue
            last = shown
            condensed = shown.metadata.get("condensed_question")
            if condensed and condensed != message:
                out.print(f"[dim]searched as: {escape(str(condensed))}[/]")
