"""Indexed documents as first-class objects: list them, delete them, count them, repair duplicate rows.

A *document* is what a user ingested: a file, a URL, or `Document`s sharing a source. Ingestion stores one
row per chunk and tags every row with (see `mini.ingest.units.to_records`):

    origin       the unit: a file's absolute path (`os.path.abspath`, symlinks not resolved), a URL without
                 credentials, or a `Document`'s source. One per document.
    source       the chunk's own document: the origin, or `origin#<row id>` for the rows of a JSONL file or a
                 JSON list. Deleting by `source` would miss those rows; these functions group and delete by
                 `origin`.
    fingerprint  "<embedding model>.<chunking settings>.<content hash>": what ingestion compares to skip an
                 unchanged file.

Rows written by hand (`VectorStore.upsert`) have no `origin`: they are grouped by their `source`.
Ingestion records no indexed-at time, so `DocumentInfo.indexed_at` is None unless rows carry an
`indexed_at` key (ISO 8601 text or Unix seconds), which they do only if written that way.

The store API has no offset and no order, so a full listing cannot page with limit/offset. It reads the rows
in slices of the row-id space instead (ids are hex hashes, so evenly spaced id ranges hold about equally many
rows): memory holds one slice of rows plus one small entry per document, whatever the store's size. Every copy
of an id falls in the same slice, so `repair_documents` finds ids stored twice one slice at a time.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from mini._checks import at_least
from mini.errors import DocumentNotFoundError, InvalidInputError, UnsupportedFilterError

if TYPE_CHECKING:
    from mini.stores.base import Record, VectorStore

__all__ = [
    "DeleteReport",
    "DocumentInfo",
    "DocumentStats",
    "RepairReport",
    "delete_documents",
    "document_stats",
    "list_documents",
    "repair_documents",
]

# Rows read per store call while listing. Each row carries its chunk text (the store API cannot leave it
# out), so 2,000 rows is a few megabytes.
PAGE_ROWS = 2_000
# Width of the id-range bounds: 8 hex digits split the id space into up to 4 billion slices.
_BOUND_DIGITS = 8
_MAX_SLICES = 1 << 16
# Sources per delete call: keeps the engine's IN-lists (and SQL strings) small.
_DELETE_BATCH = 500


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    """One indexed document.

    `source`: the name to delete it by (a file's absolute path, a URL, a `Document`'s source); a JSONL file
    is one document, however many rows it has. `chunks`: its rows in the store. `fingerprint`: what
    ingestion recorded for it (None if its rows disagree, or it was written by hand). `indexed_at`: None
    unless rows record it (ingestion does not). `file_type`: the loader's type (md, pdf, jsonl, ...), if any.
    """

    source: str
    chunks: int
    fingerprint: str | None = None
    indexed_at: datetime | None = None
    file_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "chunks": self.chunks,
            "fingerprint": self.fingerprint,
            "indexed_at": self.indexed_at.isoformat() if self.indexed_at is not None else None,
            "file_type": self.file_type,
        }


@dataclass(frozen=True, slots=True)
class DeleteReport:
    """What `delete_documents` removed: chunks per document (by its listed source), and in total (as the
    store counted them)."""

    deleted: dict[str, int]
    chunks: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "deleted": [{"source": s, "chunks": n} for s, n in self.deleted.items()],
            "documents": len(self.deleted),
            "chunks": self.chunks,
        }


@dataclass(frozen=True, slots=True)
class DocumentStats:
    """The store at a glance. `unattributed_chunks`: rows with neither `origin` nor `source` (written by
    hand), which no document owns. `by_type`: documents per file type ("other" when unknown)."""

    documents: int
    chunks: int
    unattributed_chunks: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    uri: str | None = None
    collection: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "documents": self.documents,
            "chunks": self.chunks,
            "unattributed_chunks": self.unattributed_chunks,
            "by_type": dict(self.by_type),
            "store": {"uri": self.uri, "collection": self.collection},
        }


@dataclass(frozen=True, slots=True)
class RepairReport:
    """What `repair_documents` found and did. `duplicate_ids`: ids stored more than once; `duplicate_rows`:
    their extra copies (rows beyond one per id), per document in `by_document`; `removed`: rows deleted (0 in
    a dry run); `rows_checked`: every row read."""

    rows_checked: int
    duplicate_ids: int
    duplicate_rows: int
    removed: int
    by_document: dict[str, int]
    dry_run: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows_checked": self.rows_checked,
            "duplicate_ids": self.duplicate_ids,
            "duplicate_rows": self.duplicate_rows,
            "removed": self.removed,
            "documents": [{"source": s, "duplicate_rows": n} for s, n in self.by_document.items()],
            "dry_run": self.dry_run,
        }


# -- listing ---------------------------------------------------------------------------------------------------


def document_key(metadata: dict[str, Any]) -> str | None:
    """The document a row belongs to: its `origin`, else its `source` (rows written by hand), else None."""
    for key in ("origin", "source"):
        value = metadata.get(key)
        if isinstance(value, str) and value:
            return value
    return None


class _Tally:
    """Per-document counters built from rows one page at a time."""

    def __init__(self) -> None:
        self.chunks: dict[str, int] = {}
        self.fingerprints: dict[str, str | None] = {}
        self.indexed_at: dict[str, datetime | None] = {}
        self.file_types: dict[str, str | None] = {}
        self.unattributed = 0

    def add(self, rows: list[Record]) -> None:
        for row in rows:
            meta = row.metadata
            key = document_key(meta)
            if key is None:
                self.unattributed += 1
                continue
            fingerprint = meta.get("fingerprint") if isinstance(meta.get("fingerprint"), str) else None
            stamp = _timestamp(meta.get("indexed_at"))
            file_type = meta.get("file_type") if isinstance(meta.get("file_type"), str) else None
            if key not in self.chunks:
                self.chunks[key] = 1
                self.fingerprints[key] = fingerprint
                self.indexed_at[key] = stamp
                self.file_types[key] = file_type
                continue
            self.chunks[key] += 1
            if self.fingerprints[key] != fingerprint:
                self.fingerprints[key] = None  # rows of two versions (written by hand?): no one fingerprint
            previous = self.indexed_at[key]
            if stamp is not None and (previous is None or stamp > previous):
                self.indexed_at[key] = stamp
            self.file_types[key] = self.file_types[key] or file_type

    def documents(self) -> list[DocumentInfo]:
        return [
            DocumentInfo(key, n, self.fingerprints[key], self.indexed_at[key], self.file_types[key])
            for key, n in sorted(self.chunks.items())
        ]


def _timestamp(value: Any) -> datetime | None:
    """An `indexed_at` value (Unix seconds or ISO 8601 text) as an aware datetime; None if absent or bad."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str) and value:
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    return None


def _id_bounds(slices: int) -> list[str]:
    """`slices - 1` increasing ids splitting the hex id space evenly. The ranges (-inf, b1), [b1, b2), ...,
    [b_last, +inf) cover every string, so rows with non-hex ids are still read (in whichever slice their
    id sorts into)."""
    space = 16**_BOUND_DIGITS
    return [format(i * space // slices, f"0{_BOUND_DIGITS}x") for i in range(1, slices)]


def _id_range(low: str | None, high: str | None) -> dict[str, Any] | None:
    spec = {op: bound for op, bound in (("$gte", low), ("$lt", high)) if bound is not None}
    return {"id": spec} if spec else None


async def _pages(store: VectorStore, page_rows: int) -> AsyncIterator[list[Record]]:
    """Every row of the store, in slices of about `page_rows` rows (see the module docstring)."""
    total = await store.count_async()
    if total == 0:
        return
    slices = min(_MAX_SLICES, math.ceil(total / page_rows))
    if slices <= 1:
        yield await store.get_async()
        return
    bounds: list[str | None] = [None, *_id_bounds(slices), None]
    for index, (low, high) in enumerate(itertools.pairwise(bounds)):
        try:
            rows = await store.get_async(filter=_id_range(low, high))
        except UnsupportedFilterError:
            if index:
                raise
            yield await store.get_async()  # no string ranges (Qdrant): one read of every row instead
            return
        yield rows


async def _tally(store: VectorStore, page_rows: int) -> _Tally:
    at_least(1, page_rows=page_rows)
    tally = _Tally()
    async for rows in _pages(store, page_rows):
        tally.add(rows)
    return tally


async def list_documents(store: VectorStore, *, page_rows: int = PAGE_ROWS) -> list[DocumentInfo]:
    """One entry per indexed document, sorted by source.

    Reads every row's metadata, `page_rows` rows per store call; a store being written meanwhile may be seen
    partly before and partly after a write.
    """
    return (await _tally(store, page_rows)).documents()


def _type_of(document: DocumentInfo) -> str:
    if document.file_type:
        return document.file_type
    suffix = PurePosixPath(document.source.partition("#")[0]).suffix.lower().lstrip(".")
    return suffix if suffix and suffix.isalnum() and len(suffix) <= 8 else "other"


def _public_uri(store: VectorStore) -> str | None:
    """The store's URI without credentials (a server URL may carry them), for messages and stats."""
    from mini.ingest.web import is_url, redact_url

    return redact_url(store.uri) if store.uri is not None and is_url(store.uri) else store.uri


async def document_stats(store: VectorStore, *, page_rows: int = PAGE_ROWS) -> DocumentStats:
    """Documents, chunks and documents per file type in `store` (one full read, like `list_documents`)."""
    tally = await _tally(store, page_rows)
    documents = tally.documents()
    by_type: dict[str, int] = {}
    for document in documents:
        kind = _type_of(document)
        by_type[kind] = by_type.get(kind, 0) + 1
    return DocumentStats(
        documents=len(documents),
        chunks=sum(d.chunks for d in documents) + tally.unattributed,
        unattributed_chunks=tally.unattributed,
        by_type=dict(sorted(by_type.items(), key=lambda item: (-item[1], item[0]))),
        uri=_public_uri(store),
        collection=store.collection_name,
    )


# -- deleting --------------------------------------------------------------------------------------------------


def _match(source: str) -> dict[str, Any]:
    """The rows of the document named `source`: its ingested rows, and rows written by hand under it."""
    return {"$or": [{"origin": source}, {"source": source}]}


def _path_forms(given: str) -> list[str]:
    """What ingestion would have stored for a path the user typed: its absolute form (how ingestion names a
    file) and its real path (if it was ingested through its target rather than a symlink)."""
    from mini.ingest.web import is_url

    if is_url(given) or "\x00" in given:
        return []
    expanded = os.path.expanduser(given)
    forms = [Path(os.path.abspath(expanded)).as_posix(), Path(os.path.realpath(expanded)).as_posix()]
    return [f for f in dict.fromkeys(forms) if f != given]


async def _resolve(store: VectorStore, given: str, resolve_paths: bool) -> tuple[str | None, int, str]:
    """The listed source `given` stands for and its chunk count, or (None, 0, why not)."""
    why = ""
    for candidate in [given, *(_path_forms(given) if resolve_paths else [])]:
        rows = await store.get_async(filter=_match(candidate), limit=1)
        if not rows:
            continue
        owner = rows[0].metadata.get("origin")
        # A part of another document (a JSONL row, "file.jsonl#id") is refused: re-ingesting the file would
        # skip it as unchanged (same fingerprint), so the deleted row would silently stay missing.
        part_of_other = isinstance(owner, str) and bool(owner) and owner != candidate
        if part_of_other and await store.count_async(filter={"origin": candidate}) == 0:
            why = f"{given!r} is a part of the document {owner!r}: delete that document instead"
            continue
        return candidate, await store.count_async(filter=_match(candidate)), ""
    return None, 0, why


async def delete_documents(
    store: VectorStore, sources: Sequence[str], *, resolve_paths: bool = True
) -> DeleteReport:
    """Delete every chunk of each named document (all rows of a JSONL file included).

    `sources` are names as `list_documents` shows them; with `resolve_paths`, a relative or `~` path also
    matches the absolute path ingestion stored for it (servers pass False: their working directory means
    nothing to a client). All are checked before anything is deleted: one unknown source raises
    `DocumentNotFoundError` naming every unknown one, and nothing is deleted. Empty `sources` raise
    `InvalidInputError`.
    """
    if isinstance(sources, str):
        raise InvalidInputError("sources must be a list of sources, not a single string")
    if not sources:
        raise InvalidInputError("no sources given: name at least one document (see list_documents)")
    for source in sources:
        if not isinstance(source, str) or not source:
            raise InvalidInputError(f"a source must be a non-empty string, not {source!r}")
    counts: dict[str, int] = {}
    missing: list[str] = []
    reasons: list[str] = []
    for given in dict.fromkeys(sources):
        key, chunks, why = await _resolve(store, given, resolve_paths)
        if key is None:
            missing.append(given)
            reasons += [why] if why else []
        else:
            counts[key] = chunks
    if missing:
        detail = "; ".join(reasons) if reasons else ""
        if not detail and await store.count_async() == 0:
            detail = f"the store is empty (uri {_public_uri(store)!r}, collection {store.collection_name!r})"
        raise DocumentNotFoundError(missing, detail + ("; " if detail else "") + "nothing was deleted")
    removed = 0
    keys = list(counts)
    for start in range(0, len(keys), _DELETE_BATCH):
        batch = keys[start : start + _DELETE_BATCH]
        spec = {"$or": [{"origin": {"$in": batch}}, {"source": {"$in": batch}}]}
        removed += await store.delete_async(filter=spec)
    return DeleteReport(deleted=counts, chunks=removed)


# -- repairing -------------------------------------------------------------------------------------------------


async def repair_documents(
    store: VectorStore, *, dry_run: bool = False, page_rows: int = PAGE_ROWS
) -> RepairReport:
    """Find the ids stored more than once and delete all but one copy of each.

    Older versions could store a chunk twice when two ingestions ran at once (both reported it "added"; re-runs
    skipped the files as unchanged and never noticed). Reads every row once, a slice at a time (see the module
    docstring); with `dry_run` nothing is deleted. Ingestion also removes the copies of the files it looks up.
    """
    at_least(1, page_rows=page_rows)
    from mini.stores.base import delete_duplicates

    checked = removed = duplicate_ids = duplicate_rows = 0
    by_document: dict[str, int] = {}
    async for rows in _pages(store, page_rows):
        checked += len(rows)
        seen: set[str] = set()
        extra: dict[str, int] = {}
        for row in rows:
            if row.id in seen:
                extra[row.id] = extra.get(row.id, 0) + 1
                key = document_key(row.metadata) or "(no source)"
                by_document[key] = by_document.get(key, 0) + 1
            seen.add(row.id)
        duplicate_ids += len(extra)
        duplicate_rows += sum(extra.values())
        if extra and not dry_run:
            removed += await delete_duplicates(store.backend, list(extra))
    return RepairReport(
        rows_checked=checked,
        duplicate_ids=duplicate_ids,
        duplicate_rows=duplicate_rows,
        removed=removed,
        by_document=dict(sorted(by_document.items())),
        dry_run=dry_run,
    )
