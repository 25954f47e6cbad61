"""The units of ingestion (a file, a URL, or documents sharing a source): planning them and reading them."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mini.errors import InvalidInputError, MiniError
from mini.ingest import chunking, loaders, state
from mini.stores.base import Record
from mini.types import Chunk, Document

if TYPE_CHECKING:
    import numpy as np

    from mini.ingest.limits import ParseLimits
    from mini.ingest.web import UrlFetcher

Parse = Callable[[], list[Document]]


@dataclass(eq=False)
class Unit:
    """One thing ingested as a whole: a file, a URL, or in-memory documents sharing a source."""

    origin: str
    kind: Literal["file", "url", "documents"]
    path: Path | None = None
    url: str = ""
    documents: list[Document] | None = None
    fingerprint: str = ""
    stored: state.Stored | None = None
    chunks: list[Chunk] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)


@dataclass
class Plan:
    """The units an ingestion's items stand for, the directories given (roots for pruning), and the items that
    could not be walked."""

    units: list[Unit]
    roots: list[Path]
    failures: list[tuple[str, MiniError]]


async def plan(items: Sequence[str | Path | Document], glob: str | None) -> Plan:
    """One unit per distinct origin: paths are walked (in a worker thread), URLs and Documents taken as given."""
    from mini.ingest.web import is_url, redact_url

    if isinstance(items, str | Path | Document):
        raise InvalidInputError("items must be a list of paths, URLs or Documents, not a single one")
    units: dict[str, Unit] = {}
    roots: list[Path] = []
    failures: list[tuple[str, MiniError]] = []
    for item in items:
        if isinstance(item, Document):
            unit = units.setdefault(item.source, Unit(item.source, "documents", documents=[]))
            if unit.documents is None:  # the same name as a file or URL given in this run
                raise InvalidInputError(f"a Document's source {item.source!r} is also a path or URL")
            unit.documents.append(item)
        elif is_url(item):
            # Credentials in a URL never become a source, metadata or a log line.
            origin = redact_url(str(item))
            units.setdefault(origin, Unit(origin, "url", url=str(item)))
        elif isinstance(item, str | Path):
            try:
                found, root = await asyncio.to_thread(_discover, item, glob)
            except MiniError as exc:
                failures.append((str(item), exc))
                continue
            if root is not None:
                roots.append(root)
            for path in found:
                origin = path.as_posix()
                units.setdefault(origin, Unit(origin, "file", path=path))
        else:
            raise InvalidInputError(f"cannot ingest {type(item).__name__}: give paths, URLs or Documents")
    return Plan(list(units.values()), roots, failures)


def _discover(item: str | Path, glob: str | None) -> tuple[list[Path], Path | None]:
    """The files an item stands for, and the item itself if it is a directory (a root for pruning)."""
    root = Path(os.path.abspath(item))
    return loaders.discover([item], glob=glob), root if root.is_dir() else None


async def load(
    unit: Unit, fetcher: Callable[[], Awaitable[UrlFetcher]], limits: ParseLimits | None = None
) -> tuple[str, Parse]:
    """The unit's content hash and a blocking function that parses it (once) into documents, within `limits`.

    The function holds the file's bytes only until it is called, and hands the parser its only reference
    to them, so a large text file's bytes are freed as soon as they are decoded.
    """
    if unit.kind == "file":
        assert unit.path is not None
        path = unit.path
        file_type = loaders.file_type_of(path)
        data = await asyncio.to_thread(loaders.read_file, path)
        # Hashing a large file takes milliseconds: off the loop.
        digest = await asyncio.to_thread(state.digest, data) if len(data) > 1 << 20 else state.digest(data)
        held = [data]
        del data
        return digest, lambda: loaders.parse_bytes(
            unit.origin, held.pop(), file_type, filename=path.name, limits=limits
        )
    if unit.kind == "url":
        fetched = await (await fetcher()).fetch(unit.url)
        digest = state.digest(fetched.content_type.encode() + b"\x00" + fetched.data)
        held, file_type = [fetched.data], fetched.file_type
        del fetched
        return digest, lambda: loaders.parse_bytes(unit.origin, held.pop(), file_type, limits=limits)
    documents = list(unit.documents or [])
    payload = json.dumps(
        [[d.text, d.metadata] for d in documents], sort_keys=True, default=str, ensure_ascii=False
    )
    return state.digest(payload.encode()), lambda: documents


def extra_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """`Ingestor.run(metadata=...)` checked: string keys and JSON values, as the stores keep them."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise InvalidInputError(f"metadata must be a dict, not {type(metadata).__name__}")
    for key in metadata:
        if not isinstance(key, str) or not key:
            raise InvalidInputError(f"metadata keys must be non-empty strings, not {key!r}")
    try:
        json.dumps(dict(metadata), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"metadata must hold JSON values (strings, numbers, lists, dicts): {exc}"
        ) from None
    return dict(metadata)


def metadata_key(metadata: Mapping[str, Any]) -> str:
    """The part of a fingerprint's config key that says which extra metadata the rows carry."""
    return state.digest(json.dumps(metadata, sort_keys=True, ensure_ascii=False).encode())[:16]


def parse_and_chunk(
    parse: Parse,
    *,
    chunk_tokens: int,
    overlap_tokens: int,
    tokenizer: chunking.Tokenizer | None,
    metadata: Mapping[str, Any] | None = None,
) -> tuple[list[Chunk], str | None]:
    """The unit's chunks, and the encoding its text was decoded from if that was not UTF-8; `metadata` is
    added to each document's own.

    Blocking (parsing and splitting are CPU work): run it in a worker thread. Each document is dropped once
    it is chunked, so a file's text and its chunks do not all live at once (beyond one document).
    """
    documents = parse()
    encoding = documents[0].metadata.get("encoding") if documents else None
    documents.reverse()  # popped from the end, in their order

    def drained() -> Iterator[Document]:
        while documents:
            document = documents.pop()
            yield (
                Document(document.text, document.source, {**document.metadata, **metadata})
                if metadata
                else document
            )

    chunks = chunking.chunk_documents(
        drained(), chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens, tokenizer=tokenizer
    )
    return chunks, encoding


def to_records(unit: Unit, vectors: Sequence[np.ndarray]) -> list[Record]:
    """The unit's rows: its chunks with their vectors, tagged with the unit's origin and fingerprint."""
    extra = {"origin": unit.origin, "fingerprint": unit.fingerprint}
    return [
        Record(chunk.id, vector, chunk.text, {**chunk.store_metadata(), **extra})
        for chunk, vector in zip(unit.chunks, vectors, strict=True)
    ]
