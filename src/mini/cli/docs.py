"""`mini docs list | delete | stats | repair`: the indexed documents, over the store alone (no model is loaded).

A document is what was ingested (a file, a URL, or texts sharing a source); a JSONL file is one document
however many rows it has, and deleting it removes every row (see `mini.documents`). User mistakes print one
`error:` line saying what to do and exit 2 (an unknown source, an empty store); store failures exit 1.
`list --json` on an empty store prints an empty list and exits 0: for a program that is an answer.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from mini.cli.common import CollectionOpt, JsonOpt, UriOpt, display_source, fail, out, run

if TYPE_CHECKING:
    from mini.documents import DeleteReport, DocumentInfo, DocumentStats, RepairReport
    from mini.errors import DocumentNotFoundError
    from mini.stores.base import VectorStore

T = TypeVar("T")

docs_app = typer.Typer(
    name="docs",
    help="List, delete, count and repair the indexed documents.",
    no_args_is_help=True,
    add_completion=False,
)

# Shown instead of the full fingerprint: its content part, enough to tell two versions of a file apart.
_FINGERPRINT_CHARS = 12


def _with_store(uri: str | None, collection: str | None, work: Callable[[VectorStore], Awaitable[T]]) -> T:
    """Run `work` on the store named by the options, closing it after. The store is made inside the loop,
    so a bad setting is reported by `run` as one `error:` line, like any library error."""

    async def main() -> T:
        from mini.stores.base import VectorStore

        store = VectorStore(uri, collection_name=collection)
        try:
            return await work(store)
        finally:
            await store.aclose()

    result: T = run(main())
    return result


def _where(store: VectorStore) -> str:
    from mini.ingest.web import is_url, redact_url

    uri = redact_url(store.uri) if store.uri is not None and is_url(store.uri) else store.uri
    return f"{uri} (collection {store.collection_name!r})"


def _short(fingerprint: str | None) -> str:
    return fingerprint.rsplit(".", 1)[-1][:_FINGERPRINT_CHARS] if fingerprint else "-"


@docs_app.command("list")
def list_command(uri: UriOpt = None, collection: CollectionOpt = None, as_json: JsonOpt = False) -> None:
    """List the indexed documents: source, chunks, file type and content fingerprint."""
    from mini.documents import list_documents

    async def work(store: VectorStore) -> tuple[list[DocumentInfo], str]:
        return await list_documents(store), _where(store)

    documents, where = _with_store(uri, collection, work)
    if as_json:
        # An empty list is an answer, not an error, for a program.
        print(json.dumps({"documents": [d.to_dict() for d in documents], "total": len(documents)}, indent=2))
        return
    if not documents:
        fail(
            f"no documents in {where}: index some with `mini ingest PATH`, or pass the --uri/--collection "
            "they were indexed into",
            2,
        )
    dated = any(d.indexed_at is not None for d in documents)
    table = Table()
    for name in ["source", "chunks", "type", "fingerprint", *(["indexed at"] if dated else [])]:
        table.add_column(name, justify="right" if name == "chunks" else "left", no_wrap=True)
    for d in documents:
        stamp = [d.indexed_at.isoformat(timespec="seconds") if d.indexed_at else "-"] if dated else []
        table.add_row(
            escape(display_source(d.source)), str(d.chunks), d.file_type or "-", _short(d.fingerprint), *stamp
        )
    out.print(table)
    chunks = sum(d.chunks for d in documents)
    out.print(f"{len(documents)} document(s), {chunks} chunk(s) in {escape(where)}", soft_wrap=True)


@docs_app.command("delete")
def delete_command(
    sources: Annotated[
        list[str],
        typer.Argument(help="Sources as `mini docs list` shows them (a relative file path works too)."),
    ],
    uri: UriOpt = None,
    collection: CollectionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete documents with all their chunks; if any source is unknown, nothing is deleted."""
    from mini.documents import delete_documents
    from mini.errors import DocumentNotFoundError

    async def work(store: VectorStore) -> tuple[DeleteReport | DocumentNotFoundError, bool]:
        try:
            return await delete_documents(store, sources), False
        except DocumentNotFoundError as exc:  # exit 2, not `run`'s 1: the user named something not there
            return exc, await store.count_async() == 0

    outcome, empty = _with_store(uri, collection, work)
    if not isinstance(outcome, DocumentNotFoundError):
        _show_deleted(outcome, as_json)
        return
    if empty:
        fix = "check --uri/--collection, or index documents first with `mini ingest PATH`"
    else:
        fix = "run `mini docs list` (with the same --uri/--collection) to see the indexed sources"
    fail(f"{outcome}; {fix}", 2)


def _show_deleted(report: DeleteReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    for source, chunks in report.deleted.items():
        out.print(f"deleted {escape(display_source(source))} ({chunks} chunk(s))", soft_wrap=True)
    out.print(f"Deleted {len(report.deleted)} document(s), {report.chunks} chunk(s).")


@docs_app.command("stats")
def stats_command(uri: UriOpt = None, collection: CollectionOpt = None, as_json: JsonOpt = False) -> None:
    """Count the indexed documents and chunks, and the documents per file type."""
    from mini.documents import document_stats

    stats: DocumentStats = _with_store(uri, collection, document_stats)
    if as_json:
        print(json.dumps(stats.to_dict(), indent=2))
        return
    out.print(
        f"{stats.documents} document(s), {stats.chunks} chunk(s) in {escape(str(stats.uri))} "
        f"(collection {escape(repr(stats.collection))})",
        soft_wrap=True,
    )
    if stats.by_type:
        out.print("by type: " + ", ".join(f"{escape(k)} {v}" for k, v in stats.by_type.items()))
    if stats.unattributed_chunks:
        out.print(f"{stats.unattributed_chunks} chunk(s) have no source (written without one)")


@docs_app.command("repair")
def repair_command(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only report the duplicate rows; delete nothing.")
    ] = False,
    uri: UriOpt = None,
    collection: CollectionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove duplicate rows (one id stored twice, left by concurrent ingestions of older versions)."""
    from mini.documents import repair_documents

    async def work(store: VectorStore) -> tuple[RepairReport, str]:
        return await repair_documents(store, dry_run=dry_run), _where(store)

    report, where = _with_store(uri, collection, work)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    if not report.duplicate_rows:
        out.print(
            f"No duplicate rows in {escape(where)} ({report.rows_checked} row(s) checked).", soft_wrap=True
        )
        return
    for source, rows in report.by_document.items():
        out.print(f"{escape(display_source(source))}: {rows} duplicate row(s)", soft_wrap=True)
    found = f"{report.duplicate_rows} duplicate row(s) of {report.duplicate_ids} id(s)"
    if report.dry_run:
        out.print(f"Found {found} in {len(report.by_document)} document(s); dry run, nothing was removed.")
    else:
        out.print(f"Removed {report.removed} row(s): {found} in {len(report.by_document)} document(s).")
