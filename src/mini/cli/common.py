"""What every `mini` command shares: consoles, common options, building the RAG, running an async main.

`run` is the one place the CLI calls `asyncio.run` (library code uses `mini._portal`).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rich.progress import Progress
    from rich.table import Table

    from mini._settings import Settings
    from mini.rag import AgenticRAG

# Piped or in CI, rich assumes 80 columns, which cuts the wider tables (`mini eval`) mid-header: use 120.
out = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True)

UriOpt = Annotated[
    str | None, typer.Option("--uri", help="Store location (default ./mini_data or MINI_URI).")
]
CollectionOpt = Annotated[str | None, typer.Option("--collection", help="Collection name (default docs).")]
EmbeddingOpt = Annotated[
    str | None,
    typer.Option(
        "--embedding-model",
        help="e.g. local:all-MiniLM-L6-v2-int8 (default), local:all-MiniLM-L6-v2 (float) or openai:MODEL.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

# The answering options the answering commands share (`mini query`, `mini chat`, `mini serve`, `mini config`).
# Each is a settings field (mini._settings): a flag overrides MINI_<NAME>, `.env` and mini.toml, which override
# the defaults. The help texts name the variable rather than repeat a default (`mini config` shows the values),
# and choices are checked by the settings, not by click, so a wrong one is the same one-line error everywhere.
LLMOpt = Annotated[
    str | None,
    typer.Option(
        "--llm",
        help="openai:MODEL, anthropic:MODEL, bedrock:MODEL_ID, or 'none' for offline answers (MINI_LLM).",
    ),
]
ModeOpt = Annotated[
    str | None,
    typer.Option(
        "--mode", "--retrieval-mode", help="Retrieval: dense, keyword or hybrid (MINI_RETRIEVAL_MODE)."
    ),
]
RerankOpt = Annotated[
    str | None,
    typer.Option(
        "--rerank", "--reranker", help="Reranker: none, llm, cross-encoder or cohere (MINI_RERANKER)."
    ),
]
TopKOpt = Annotated[int | None, typer.Option("--top-k", help="Chunks retrieved per question (MINI_TOP_K).")]
RewriteOpt = Annotated[
    bool | None,
    typer.Option(
        "--rewrite/--no-rewrite",
        help="LLM query rewriting; runs only with an LLM (MINI_USE_QUERY_REWRITING).",
        show_default=False,
    ),
]
FilterOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--filter",
        help="Metadata filter: key=value (value parsed as JSON when it parses, else text), or a JSON object "
        'for operators, e.g. \'{"year": {"$gte": 2020}}\'. Repeat to AND several.',
    ),
]

# Settings field -> the flag that sets it (docs/configuration.md's CLI column; `mini config` says "flag").
FLAG_OF = {
    "uri": "--uri",
    "collection": "--collection",
    "embedding_model": "--embedding-model",
    "llm": "--llm",
    "retrieval_mode": "--mode",
    "reranker": "--rerank",
    "top_k": "--top-k",
    "use_query_rewriting": "--rewrite/--no-rewrite",
}


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr (never wrapped, so scripts can grep it) and exit `code`: 2 for bad input or
    configuration, 1 for a failure while working."""
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def load_settings_or_exit(**flags: Any) -> Settings:
    """The settings with the given flags (settings field names; None = not given) on top; bad input in any
    source (flag, environment, .env, mini.toml) ends the command with one line and exit 2."""
    from mini.config import load_settings
    from mini.errors import InvalidInputError

    try:
        return load_settings(flags)
    except InvalidInputError as exc:
        fail(str(exc))


def settings_flags(
    uri: str | None,
    collection: str | None,
    embedding_model: str | None,
    llm: str | None,
    mode: str | None,
    rerank: str | None,
    top_k: int | None,
    rewrite: bool | None,
) -> dict[str, Any]:
    """The flags `mini query`, `chat`, `serve` and `config` share, as settings fields (None = not given)."""
    return {
        "uri": uri,
        "collection": collection,
        "embedding_model": embedding_model,
        "llm": llm,
        "retrieval_mode": mode,
        "reranker": rerank,
        "top_k": top_k,
        "use_query_rewriting": rewrite,
    }


def build_rag(
    uri: str | None = None,
    collection: str | None = None,
    embedding_model: str | None = None,
    llm: str | None = None,
    **flags: Any,
) -> AgenticRAG:
    """The RAG the settings describe, with the given flags on top (`flags`: more settings fields, e.g.
    `retrieval_mode`, `reranker`, `top_k`, `use_query_rewriting`). Construction does no I/O."""
    settings = load_settings_or_exit(
        uri=uri, collection=collection, embedding_model=embedding_model, llm=llm, **flags
    )
    return rag_from_settings(settings)


def rag_from_settings(settings: Settings) -> AgenticRAG:
    from mini import AgenticRAG, EmbeddingModel, LLMConfig, RerankerConfig, RetrievalConfig, VectorStore
    from mini.errors import MiniError

    try:
        embedding_model = EmbeddingModel(settings.embedding_model)
        # A local model loads (~0.2-0.3 s, mostly in onnxruntime's C++) while this process goes on importing and
        # opening the store: every command that builds a RAG embeds something.
        start_loading = getattr(embedding_model.embedder, "start_loading", None)
        if start_loading is not None:
            start_loading()
        # LLMConfig.from_settings is "none" (offline) unless MINI_LLM/--llm or OPENAI_API_KEY selects a model.
        return AgenticRAG(
            VectorStore(settings.uri, collection_name=settings.collection),
            embedding_model,
            llm_config=LLMConfig.from_settings(settings),
            retrieval_config=RetrievalConfig.from_settings(settings),
            reranker_config=RerankerConfig.from_settings(settings),
        )
    except MiniError as exc:  # e.g. the llm reranker without an LLM, a provider extra not installed
        fail(str(exc))


def parse_filters(values: Sequence[str] | None) -> dict[str, Any] | None:
    """`--filter` values as one filter dict (several are AND-ed), validated now (`parse_filter`), so a
    malformed one or an unknown operator fails before any I/O; None without filters."""
    from mini.errors import InvalidInputError
    from mini.stores.filters import parse_filter

    if not values:
        return None
    parts: list[dict[str, Any]] = []
    for raw in values:
        text = raw.strip()
        if text.startswith("{"):
            try:
                spec = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"--filter {raw!r} is not valid JSON: {exc.msg}") from None
        else:
            key, sep, value = text.partition("=")
            if not sep or not key.strip():
                raise InvalidInputError(
                    f'--filter {raw!r}: expected key=value or a JSON object like \'{{"year": {{"$gte": 2020}}}}\''
                )
            spec = {key.strip(): _json_or_text(value)}
        if not isinstance(spec, dict):
            raise InvalidInputError(f"--filter {raw!r}: a JSON filter must be an object")
        parts.append(spec)
    combined = parts[0] if len(parts) == 1 else {"$and": parts}
    parse_filter(combined)
    return combined


def filters_or_exit(values: Sequence[str] | None) -> dict[str, Any] | None:
    from mini.errors import InvalidInputError

    try:
        return parse_filters(values)
    except InvalidInputError as exc:
        fail(str(exc))


def _json_or_text(value: str) -> Any:
    # year=2020 is the number 2020, draft=true the boolean; lang=en (not JSON) stays the text "en";
    # quote to force text: name='"2020"'.
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


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
        fail(str(exc), 1)
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
