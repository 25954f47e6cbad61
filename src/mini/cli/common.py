"""What every `mini` command shares: consoles, common options, building the RAG, running an async main.

`run` is the one place the CLI calls `asyncio.run` (library code uses `mini._portal`).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rich.progress import Progress
    from rich.table import Table

    from mini.query.pipeline import AgenticRAG

# Piped or in CI, rich assumes 80 columns, which cuts the wider tables (`mini eval`) mid-header: use 120.
out = Console(width=None if sys.stdout.isatty() else 120)
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


def build_rag(
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


def progress_bar(label: str) -> Progress:
    """The CLI's one progress display: on stderr (stdout stays parseable), gone when the work ends. `label`
    is the first column's template; every task carries a `note` field."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def numbers_table(columns: Sequence[str]) -> Table:
    """A table whose first column names the row (left-aligned) and whose other columns are numbers (right);
    cells never wrap, so piped output keeps one row per line."""
    from rich.table import Table

    table = Table()
    for i, column in enumerate(columns):
        table.add_column(column, justify="right" if i else "left", no_wrap=True)
    return table


def display_source(source: str) -> str:
    """Paths relative to the working directory when they are below it: shorter and still unambiguous."""
    path, sep, fragment = source.partition("#")
    try:
        shown = str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        shown = path
    return shown + sep + fragment


def start_tracing() -> None:
    """Langfuse export when its keys are set (nothing otherwise), set up before the loop starts so its imports
    never stall it."""
    from mini.tracing import configure_langfuse

    configure_langfuse()


def run(main: Any) -> Any:
    from mini.errors import MiniError

    start_tracing()
    try:
        return asyncio.run(main)
    except MiniError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
