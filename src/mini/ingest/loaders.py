"""File loaders: find supported files and turn each into `Document`s (blocking; async callers use threads)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from mini.errors import DocumentError, DocumentParseError, UnsupportedFormatError
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
_DROP_HTML_TAGS = ["script", "style", "nav", "noscript", "template", "head"]

# PDFium is not thread-safe, not even across different documents (pypdfium2 docs, "Incompatibility with
# Threading"): concurrent `load_file_async` calls would crash the process. Every pdfium call holds this lock.
_PDFIUM_LOCK = threading.Lock()


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


async def load_file_async(path: str | Path) -> list[Document]:
    """`load_file` in a worker thread, so parsing never blocks the event loop."""
    return await asyncio.to_thread(load_file, path)


def load_file(path: str | Path) -> list[Document]:
    """Parse one file into documents (one per PDF page, JSON list item or JSONL row; otherwise one).

    An empty or whitespace-only file, or one whose extracted text is empty, returns ``[]``: it is not an error,
    there is simply nothing to index (except a PDF with pages but no text, see below).
    Raises `UnsupportedFormatError` for an unknown suffix and `DocumentParseError` for a file that cannot be read
    (missing, permissions) or parsed (corrupt, binary, encrypted, a PDF without a text layer); every message
    names the file. Blocking: async callers use `load_file_async`.
    """
    abs_path = _absolute(path)
    file_type = file_type_of(abs_path)
    return parse_bytes(abs_path.as_posix(), read_file(abs_path), file_type, filename=abs_path.name)


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


def parse_bytes(source: str, data: bytes, file_type: str, *, filename: str | None = None) -> list[Document]:
    """Parse the bytes of a file or download of `file_type` (see `file_type_of`) into documents named `source`.

    Empty content gives ``[]``. CPU-bound and blocking: async callers run it in a thread.
    """
    parser = _PARSERS.get(file_type)
    if parser is None:
        raise UnsupportedFormatError(source, f"unsupported file type {file_type!r}")
    if not data.strip():
        return []
    metadata: dict[str, Any] = {"file_type": file_type}
    if filename:
        metadata = {"filename": filename, **metadata}
    return parser(source, data, metadata)


def _document(text: str, source: str, metadata: dict[str, Any]) -> list[Document]:
    text = _tidy(text)
    return [Document(text=text, source=source, metadata=metadata)] if text else []


def _tidy(text: str) -> str:
    """Normalise newlines, strip trailing spaces and collapse runs of blank lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


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


def _parse_text(source: str, data: bytes, metadata: dict[str, Any]) -> list[Document]:
    text = _decode_text(source, data, metadata)
    if metadata["file_type"] == "md":
        match = re.search(r"^#[ \t]+(.+?)[ \t#]*$", text, flags=re.MULTILINE)
        if match:
            metadata["title"] = match.group(1).strip()
    return _document(text, source, metadata)


# --- HTML ----------------------------------------------------------------------------------------------------


def _parse_html(source: str, data: bytes, metadata: dict[str, Any]) -> list[Document]:
    from bs4 import BeautifulSoup
    from markdownify import ATX, MarkdownConverter

    # Bytes, not text: BeautifulSoup honours <meta charset> and BOMs when it decodes them itself.
    soup = BeautifulSoup(data, "html.parser")
    if soup.title and soup.title.get_text(strip=True):
        metadata["title"] = soup.title.get_text(" ", strip=True)
    for tag in soup.find_all(_DROP_HTML_TAGS):
        tag.decompose()
    converter = MarkdownConverter(
        heading_style=ATX,
        # Link targets and image URLs are noise for retrieval; keep the link text only.
        strip=["a", "img"],
        # Backslash escapes (snake\_case, 5\*3) would end up in chunks and hurt keyword search.
        escape_asterisks=False,
        escape_underscores=False,
        # Source line breaks inside a paragraph are layout, not content: join them (wrap_width=None: no refill).
        wrap=True,
        wrap_width=None,
    )
    return _document(converter.convert_soup(soup), source, metadata)


# --- PDF -----------------------------------------------------------------------------------------------------


def _parse_pdf(source: str, data: bytes, metadata: dict[str, Any]) -> list[Document]:
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    reasons = {
        pdfium_c.FPDF_ERR_PASSWORD: "encrypted; a password is required",
        pdfium_c.FPDF_ERR_SECURITY: "encrypted with an unsupported security scheme",
        pdfium_c.FPDF_ERR_FORMAT: "not a valid PDF (corrupt or truncated)",
    }
    pages: list[tuple[int, str]] = []
    with _PDFIUM_LOCK:
        try:
            pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            raise DocumentParseError(source, reasons.get(exc.err_code, f"cannot open PDF: {exc}")) from exc
        # Close explicitly, inside the lock: pdfium objects hold native memory, and a finalizer running later
        # on another thread would call pdfium without the lock.
        try:
            title = pdf.get_metadata_value("Title").strip()
            for number in range(1, len(pdf) + 1):
                page = pdf.get_page(number - 1)
                try:
                    textpage = page.get_textpage()
                    try:
                        # get_text_bounded handles all of Unicode; get_text_range is limited to UCS-2.
                        pages.append((number, textpage.get_text_bounded()))
                    finally:
                        textpage.close()
                finally:
                    page.close()
        except pdfium.PdfiumError as exc:
            raise DocumentParseError(source, f"cannot read PDF: {exc}") from exc
        finally:
            pdf.close()
    if title:
        metadata["title"] = title
    documents = [
        doc
        for number, text in pages
        for doc in _document(_unwrap_lines(_tidy(text)), source, {**metadata, "page": number})
    ]
    if not documents:
        raise DocumentParseError(source, "no extractable text; scanned PDFs need OCR, which is not supported")
    return documents


def _unwrap_lines(text: str) -> str:
    """Join the lines a PDF wrapped to fit the page, so sentences are not cut in two.

    PDFs store lines, not paragraphs. A line that fills most of the page width and does not end a sentence
    was wrapped: join it to the next. Short lines (headings, paragraph ends, list items) keep their breaks.
    """
    # PDFium already joins a line ending in a hyphen to the next, marking the spot with \x02 (\ufffe from
    # get_text_range); drop the mark: most such hyphens split one word ("collec-tion").
    lines = text.replace("\x02", "").replace("\ufffe", "").split("\n")
    # The page's usual full-line length; a high percentile, not the max, so one over-long line (e.g. two
    # lines PDFium joined) does not make every ordinary line look short.
    lengths = sorted(len(line) for line in lines)
    width = lengths[int(0.9 * (len(lengths) - 1))]
    out: list[str] = []
    joining = False
    for line in lines:
        if joining:
            line = out.pop() + " " + line
        out.append(line)
        joining = bool(line) and len(line) >= 0.75 * width and not line.endswith((".", "!", "?", ":"))
    return "\n".join(out)


# --- DOCX ----------------------------------------------------------------------------------------------------


def _parse_docx(source: str, data: bytes, metadata: dict[str, Any]) -> list[Document]:
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        lines: list[str] = []
        first_heading = ""
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                lines.extend(_docx_table_rows(block))
                lines.append("")
                continue
            text = block.text.strip()
            if not text:
                continue
            style = (block.style.name if block.style is not None else "") or ""
            level = _heading_level(style)
            if level:
                first_heading = first_heading or text
                lines.extend(["", "#" * level + " " + text, ""])
            elif style.startswith("List"):
                lines.append("- " + text)
            else:
                lines.extend([text, ""])
        title = (document.core_properties.title or "").strip() or first_heading
    # python-docx reports damage with whatever the layer below raised (BadZipFile, KeyError, lxml errors, ...).
    except Exception as exc:
        raise DocumentParseError(source, f"cannot read DOCX: {type(exc).__name__}: {exc}") from exc
    if title:
        metadata["title"] = title
    return _document("\n".join(lines), source, metadata)


def _heading_level(style: str) -> int:
    if style == "Title":
        return 1
    match = re.fullmatch(r"Heading (\d)", style)
    return min(int(match.group(1)), 6) if match else 0


def _docx_table_rows(table: Any) -> list[str]:
    rows = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = " ".join(cell.text.split())
            # A merged cell is returned once per grid column it spans; keep it once.
            if text and (not cells or cells[-1] != text):
                cells.append(text)
        if cells:
            rows.append(" | ".join(cells))
    return rows


# --- JSON and JSONL ------------------------------------------------------------------------------------------


def _parse_json(source: str, data: bytes, metadata: dict[str, Any]) -> list[Document]:
    text = _decode_text(source, data, metadata)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        reason = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise DocumentParseError(source, reason) from exc
    if isinstance(value, dict) and _text_field(value):
        return _record_document(value, source, metadata)
    if isinstance(value, list) and value and all(isinstance(v, dict) and _text_field(v) for v in value):
        documents: list[Document] = []
        for index, item in enumerate(value):
            documents += _record_document(item, f"{source}#{_row_id(item) or index}", metadata)
        return documents
    # Any other shape is still text worth indexing: keys and values as readable, indented JSON.
    return _document(json.dumps(value, indent=2, ensure_ascii=False), source, metadata)


def _parse_jsonl(source: str, data: bytes, metadata: dict[str, Any]) -> list[Document]:
    text = _decode_text(source, data, metadata)
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
        if not isinstance(row, dict) or not (_text_field(row) or isinstance(row.get("title"), str)):
            fields = "/".join(_TEXT_FIELDS)
            raise DocumentParseError(source, f"line {number}: expected an object with a {fields} field")
        documents += _record_document(row, f"{source}#{_row_id(row) or number}", metadata)
    return documents


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
    return _document(body, source, metadata)


_PARSERS: dict[str, Callable[[str, bytes, dict[str, Any]], list[Document]]] = {
    "txt": _parse_text,
    "md": _parse_text,
    "html": _parse_html,
    "pdf": _parse_pdf,
    "docx": _parse_docx,
    "json": _parse_json,
    "jsonl": _parse_jsonl,
}
