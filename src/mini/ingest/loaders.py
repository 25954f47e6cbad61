"""File loaders: find supported files and turn each into `Document`s (blocking; async callers use threads)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from mini.errors import DocumentError, DocumentLimitError, DocumentParseError, UnsupportedFormatError
from mini.ingest import formats
from mini.ingest.formats import to_documents
from mini.ingest.limits import ParseLimits
from mini.types import Document

__all__ = [
    "SUPPORTED_SUFFIXES",
    "discover",
    "file_type_of",
    "load_file",
    "load_file_async",
    "parse_bytes",
    "read_file",
]

logger = logging.getLogger("mini.ingest")

# Suffix -> metadata["file_type"]; chunking picks the Markdown splitter from the file type.
_FILE_TYPES = {
    ".txt": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".json": "json",
    ".jsonl": "jsonl",
}
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_FILE_TYPES)

_TEXT_FIELDS = ("text", "content", "body")
_ID_FIELDS = ("_id", "id")


def discover(paths: Sequence[str | Path], *, glob: str | None = None) -> list[Path]:
    """Expand files and directories into a sorted, de-duplicated list of absolute file paths.

    Directories are walked recursively; a walked file is kept when its suffix is supported, it matches `glob`
    (if given; matched against the path relative to the directory, e.g. ``"*.md"`` or ``"notes/*.txt"``) and
    neither it nor a folder above it (below the given directory) is hidden (name starts with ``.``).
    Files named explicitly are always kept, so an unsupported one fails loudly in `load_file` instead of
    being skipped in silence. Symlinked folders are not followed (no cycles).

    This is blocking disk I/O: async callers run it with ``asyncio.to_thread(discover, paths)``.

    Raises `DocumentError` for a path that does not exist.
    """
    found: set[Path] = set()
    for given in paths:
        path = _absolute(given)
        if path.is_file():
            found.add(path)
        elif path.is_dir():
            found.update(_walk(path, glob))
        elif not path.exists():
            raise DocumentError(str(given), "no such file or directory")
        else:
            raise DocumentError(str(given), "not a regular file or directory")
    return sorted(found, key=lambda p: p.as_posix())


def _walk(root: Path, glob: str | None) -> list[Path]:
    def warn(exc: OSError) -> None:
        # os.walk skips unreadable folders silently by default; say so instead.
        logger.warning("skipping %s: %s", exc.filename, exc.strerror)

    found: list[Path] = []
    for folder, dirnames, filenames in os.walk(root, onerror=warn):
        # Pruning in place stops os.walk from descending into hidden folders (.git, .venv, ...).
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or Path(name).suffix.lower() not in SUPPORTED_SUFFIXES:
                continue
            path = Path(folder, name)
            if glob and not PurePosixPath(path.relative_to(root).as_posix()).match(glob):
                continue
            if path.is_file():  # skips broken symlinks, fifos, sockets
                found.append(path)
    return found


def _absolute(path: str | Path) -> Path:
    # abspath normalises ".." without resolving symlinks, so the source is the path the user sees.
    return Path(os.path.abspath(os.fspath(path)))


async def load_file_async(path: str | Path, *, limits: ParseLimits | None = None) -> list[Document]:
    """`load_file` in a worker thread, so parsing never blocks the event loop."""
    return await asyncio.to_thread(load_file, path, limits=limits)


def load_file(path: str | Path, *, limits: ParseLimits | None = None) -> list[Document]:
    """Parse one file into documents (one per PDF page, JSON list item or JSONL row; otherwise one).

    An empty or whitespace-only file, or one whose extracted text is empty, returns ``[]``: it is not an error,
    there is simply nothing to index (except a PDF with pages but no text, see below).
    Raises `UnsupportedFormatError` for an unknown suffix and `DocumentParseError` for a file that cannot be read
    (missing, permissions) or parsed (corrupt, binary, encrypted, a PDF without a text layer), and its subclass
    `DocumentLimitError` for a file over one of `limits` (see `parse_bytes`); every message names the file.
    Blocking: async callers use `load_file_async`.
    """
    abs_path = _absolute(path)
    file_type = file_type_of(abs_path)
    return parse_bytes(
        abs_path.as_posix(), read_file(abs_path), file_type, filename=abs_path.name, limits=limits
    )


def file_type_of(path: str | Path) -> str:
    """The loader's file type for a path's suffix (``"md"`` for ``.markdown``); `UnsupportedFormatError` if none."""
    suffix = Path(path).suffix.lower()
    file_type = _FILE_TYPES.get(suffix)
    if file_type is None:
        supported = " ".join(sorted(SUPPORTED_SUFFIXES))
        raise UnsupportedFormatError(
            _absolute(path).as_posix(),
            f"unsupported file type {suffix or '(no suffix)'!r}; supported: {supported}",
        )
    return file_type


def read_file(path: str | Path) -> bytes:
    """A file's bytes, or `DocumentParseError` naming the file. Blocking."""
    abs_path = _absolute(path)
    try:
        return abs_path.read_bytes()
    except IsADirectoryError as exc:
        raise DocumentParseError(abs_path.as_posix(), "is a directory") from exc
    except OSError as exc:
        reason = f"cannot read file: {(exc.strerror or str(exc)).lower()}"
        raise DocumentParseError(abs_path.as_posix(), reason) from exc


def parse_bytes(
    source: str,
    data: bytes,
    file_type: str,
    *,
    filename: str | None = None,
    limits: ParseLimits | None = None,
) -> list[Document]:
    """Parse the bytes of a file or download of `file_type` (see `file_type_of`) into documents named `source`.

    Empty content gives ``[]``. A file over one of `limits` (default `ParseLimits()`) raises
    `DocumentLimitError` while it is read, before the memory or time is spent. CPU-bound and blocking: async
    callers run it in a thread. A caller that passes its only reference to `data` lets a text file's bytes be
    freed as soon as they are decoded (`units.load` does).
    """
    if file_type not in _TEXT_PARSERS and file_type not in _BINARY_PARSERS:
        raise UnsupportedFormatError(source, f"unsupported file type {file_type!r}")
    if not data or data.isspace():  # isspace, not strip: no copy of a large file
        return []
    metadata: dict[str, Any] = {"file_type": file_type}
    if filename:
        metadata = {"filename": filename, **metadata}
    text_parser = _TEXT_PARSERS.get(file_type)
    if text_parser is None:
        return _BINARY_PARSERS[file_type](source, data, metadata, limits or _DEFAULT_LIMITS)
    text = _decode_text(source, data, metadata)
    del data  # the bytes go now if the caller handed them over: the text is the only copy from here on
    return text_parser(source, text, metadata)


# --- plain text and Markdown ---------------------------------------------------------------------------------


def _decode_text(source: str, data: bytes, metadata: dict[str, Any]) -> str:
    # UTF-16 files contain NUL bytes by design; recognise them by their BOM before the binary check.
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        metadata["encoding"] = "utf-16"
        return data.decode("utf-16", errors="replace")
    if b"\x00" in data:
        raise DocumentParseError(source, "binary content (NUL bytes); not a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    # Not UTF-8: most likely a Windows-1252 file; latin-1 decodes anything. Marked so users can find them.
    try:
        text = data.decode("cp1252")
        metadata["encoding"] = "cp1252"
    except UnicodeDecodeError:
        text = data.decode("latin-1")
        metadata["encoding"] = "latin-1"
    logger.debug("%s is not UTF-8; decoded as %s", source, metadata["encoding"])
    return text


def _parse_text(source: str, text: str, metadata: dict[str, Any]) -> list[Document]:
    if metadata["file_type"] == "md":
        match = re.search(r"^#[ \t]+(.+?)[ \t#]*$", text, flags=re.MULTILINE)
        if match:
            metadata["title"] = match.group(1).strip()
    return to_documents(text, source, metadata)


# --- JSON and JSONL ------------------------------------------------------------------------------------------


def _parse_json(source: str, text: str, metadata: dict[str, Any]) -> list[Document]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        reason = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise DocumentParseError(source, reason) from exc
    except RecursionError as exc:
        raise _too_deep(source) from exc
    if isinstance(value, dict) and _text_field(value):
        return _record_document(value, source, metadata)
    if isinstance(value, list) and value and all(isinstance(v, dict) and _text_field(v) for v in value):
        documents: list[Document] = []
        for index, item in enumerate(value):
            documents += _record_document(item, f"{source}#{_row_id(item) or index}", metadata)
        return documents
    # Any other shape is still text worth indexing: keys and values as readable, indented JSON.
    try:
        return to_documents(_pretty_json(value, len(text)), source, metadata)
    except RecursionError as exc:  # indent=2 encodes in Python, one frame per level
        raise _too_deep(source) from exc


def _pretty_json(value: Any, length: int) -> str:
    """`value` indented, unless indenting would more than triple its `length`: then on one line.

    Every line is indented by its depth, so deep nesting multiplies the text (a 20 MB list of lists 500 deep
    would pretty-print to ~10 GB). The walk adds up the indentation first and stops as soon as it is too much.
    """
    budget = 2 * length
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        budget -= 2 * depth + 1
        if budget < 0:
            return json.dumps(value, ensure_ascii=False)
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return json.dumps(value, indent=2, ensure_ascii=False)


def _parse_jsonl(source: str, text: str, metadata: dict[str, Any]) -> list[Document]:
    documents: list[Document] = []
    # Whole file or nothing: a bad line raises before any row is returned, so nothing is half-loaded.
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            reason = f"line {number}: invalid JSON at column {exc.colno}: {exc.msg}"
            raise DocumentParseError(source, reason) from exc
        except RecursionError as exc:
            raise _too_deep(source, f"line {number}: ") from exc
        if not isinstance(row, dict) or not (_text_field(row) or isinstance(row.get("title"), str)):
            fields = "/".join(_TEXT_FIELDS)
            raise DocumentParseError(source, f"line {number}: expected an object with a {fields} field")
        documents += _record_document(row, f"{source}#{_row_id(row) or number}", metadata)
    return documents


def _too_deep(source: str, where: str = "") -> DocumentLimitError:
    # Python's JSON parser recurses once per level and stops near the interpreter's recursion limit (1,000).
    reason = (
        f"{where}JSON nested too deeply (Python's parser stops at about {sys.getrecursionlimit():,} levels)"
    )
    return DocumentLimitError(source, reason)


def _text_field(record: dict[str, Any]) -> str | None:
    return next((key for key in _TEXT_FIELDS if isinstance(record.get(key), str)), None)


def _row_id(record: dict[str, Any]) -> str | None:
    value = next((record[key] for key in _ID_FIELDS if isinstance(record.get(key), str | int)), None)
    return None if value is None or value == "" else str(value)


def _record_document(record: dict[str, Any], source: str, base: dict[str, Any]) -> list[Document]:
    """One JSON object with a text field -> a document; scalar fields become metadata.

    A title is also put in front of the text (BEIR style): it often carries the words a query uses.
    """
    field = _text_field(record)
    body = record.get(field, "") if field else ""
    # Scalars only: stores keep flat metadata. Loader fields (filename, file_type) win over row fields.
    scalars = {
        k: v for k, v in record.items() if k != field and isinstance(v, str | int | float | bool) and v != ""
    }
    metadata = {**scalars, **base}
    title = record.get("title")
    if isinstance(title, str) and title.strip():
        title = title.strip()
        metadata["title"] = title
        if not body.lstrip().startswith(title):
            body = f"{title}\n\n{body}"
    return to_documents(body, source, metadata)


# Text formats get their bytes decoded (and tidied) first; the others parse bytes, bounded by the limits.
_TEXT_PARSERS: dict[str, Callable[[str, str, dict[str, Any]], list[Document]]] = {
    "txt": _parse_text,
    "md": _parse_text,
    "json": _parse_json,
    "jsonl": _parse_jsonl,
}
_BINARY_PARSERS: dict[str, Callable[[str, bytes, dict[str, Any], ParseLimits], list[Document]]] = {
    "html": formats.parse_html,
    "pdf": formats.parse_pdf,
    "docx": formats.parse_docx,
}
_DEFAULT_LIMITS = ParseLimits()
