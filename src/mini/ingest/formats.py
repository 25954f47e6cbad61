"""The parsers that need a library (HTML, PDF, DOCX), each bounded by `ParseLimits`, and the text clean-up every
parser shares. Blocking and CPU-bound: async callers run them in a worker thread (see `loaders`)."""

from __future__ import annotations

import io
import re
import threading
import zipfile
from typing import TYPE_CHECKING, Any

from mini.errors import DocumentError, DocumentLimitError, DocumentParseError
from mini.ingest.limits import HTML_MAX_DEPTH, ParseLimits, check_archive, over_limit
from mini.types import Document

if TYPE_CHECKING:
    from bs4 import BeautifulSoup

__all__ = ["parse_docx", "parse_html", "parse_pdf", "tidy", "to_documents"]

_DROP_HTML_TAGS = ["script", "style", "nav", "noscript", "template", "head"]

# PDFium is not thread-safe, not even across different documents (pypdfium2 docs, "Incompatibility with
# Threading"): concurrent `load_file_async` calls would crash the process. Every pdfium call holds this lock.
_PDFIUM_LOCK = threading.Lock()

_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_BLANK_RUNS = re.compile(r"\n{3,}")


def to_documents(text: str, source: str, metadata: dict[str, Any]) -> list[Document]:
    """One document of the tidied `text`, or none if nothing is left."""
    text = tidy(text)
    return [Document(text=text, source=source, metadata=metadata)] if text else []


def tidy(text: str) -> str:
    """Normalise newlines, strip trailing spaces and collapse runs of blank lines.

    Each step returns its input unchanged when there is nothing to do (no copy), and rebinding `text` frees the
    step before: a large file costs at most two extra copies here, and a clean one none but the final strip.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    # A substring test first: ~50x faster than the regex scan when there is nothing to replace (most files).
    if " \n" in text or "\t\n" in text:
        text = _TRAILING_SPACE.sub("\n", text)
    if "\n\n\n" in text:
        text = _BLANK_RUNS.sub("\n\n", text)
    return text.strip()


# --- HTML ----------------------------------------------------------------------------------------------------


def parse_html(source: str, data: bytes, metadata: dict[str, Any], limits: ParseLimits) -> list[Document]:
    from bs4 import BeautifulSoup
    from markdownify import ATX, MarkdownConverter

    # BeautifulSoup holds ~18x the markup in memory and conversion takes ~0.6 s per MB: refuse before either.
    if len(data) > limits.max_html_bytes:
        what = f"{len(data):,} bytes of HTML"
        raise over_limit(source, what, "max_html_bytes", limits.max_html_bytes)
    # Bytes, not text: BeautifulSoup honours <meta charset> and BOMs when it decodes them itself.
    soup = BeautifulSoup(data, "html.parser")
    if soup.title and soup.title.get_text(strip=True):
        metadata["title"] = soup.title.get_text(" ", strip=True)
    for tag in soup.find_all(_DROP_HTML_TAGS):
        tag.decompose()
    _flatten_deep(soup, HTML_MAX_DEPTH)
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
    try:
        markdown = converter.convert_soup(soup)
    except RecursionError as exc:  # only if the caller's own stack was already deep
        reason = f"HTML nested too deeply to convert (more than {HTML_MAX_DEPTH} levels are flattened)"
        raise DocumentLimitError(source, reason) from exc
    return to_documents(markdown, source, metadata)


def _flatten_deep(soup: BeautifulSoup, max_depth: int) -> None:
    """Replace the content of every element at `max_depth` that has child elements by its plain text.

    markdownify recurses once per level, so a page nested 100,000 deep would raise RecursionError; this keeps
    the words and drops only the structure below `max_depth`. Linear: one walk of the tree (no recursion, no
    `parents` chains), and the flattened subtrees are disjoint.
    """
    from bs4 import NavigableString, Tag

    depth = {id(soup): 0}
    cuts: list[Tag] = []
    for element in soup.descendants:
        if isinstance(element, Tag):
            level = depth[id(element.parent)] + 1
            depth[id(element)] = level
            if level == max_depth and element.find(True) is not None:
                cuts.append(element)
    for tag in cuts:
        text = tag.get_text()
        tag.clear(decompose=True)
        tag.append(NavigableString(text))


# --- PDF -----------------------------------------------------------------------------------------------------


def parse_pdf(source: str, data: bytes, metadata: dict[str, Any], limits: ParseLimits) -> list[Document]:
    """One document per page with text. A PDF over `max_pdf_pages` or `max_text_chars` fails as a whole (no
    partial index: a file cut short would look complete, and raising the limit later would not re-read it,
    since its fingerprint is unchanged)."""
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
            count = len(pdf)
            if count > limits.max_pdf_pages:
                raise over_limit(source, f"{count:,} pages", "max_pdf_pages", limits.max_pdf_pages)
            budget = limits.max_text_chars
            for number in range(1, count + 1):
                page = pdf.get_page(number - 1)
                try:
                    textpage = page.get_textpage()
                    try:
                        # Counted before the text is copied out: one huge page cannot overshoot the budget.
                        if textpage.count_chars() > budget:
                            what = f"more than {limits.max_text_chars:,} characters of text by page {number}"
                            raise over_limit(source, what, "max_text_chars", limits.max_text_chars)
                        # get_text_bounded handles all of Unicode; get_text_range is limited to UCS-2.
                        text = textpage.get_text_bounded()
                        budget -= len(text)
                        pages.append((number, text))
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
        for doc in to_documents(_unwrap_lines(tidy(text)), source, {**metadata, "page": number})
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


def parse_docx(source: str, data: bytes, metadata: dict[str, Any], limits: ParseLimits) -> list[Document]:
    import docx
    from docx.table import Table

    try:
        # The zip's members are checked before python-docx reads any (it reads each one whole).
        stream = io.BytesIO(data)  # shares the bytes until written to (never)
        with zipfile.ZipFile(stream) as archive:
            check_archive(source, archive, stream, limits)
        document = docx.Document(io.BytesIO(data))
        lines: list[str] = []
        first_heading = ""
        budget = limits.max_text_chars
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                rows = _docx_table_rows(block)
                budget -= sum(map(len, rows))
                lines.extend([*rows, ""])
            elif text := block.text.strip():
                budget -= len(text)
                style = (block.style.name if block.style is not None else "") or ""
                level = _heading_level(style)
                if level:
                    first_heading = first_heading or text
                    lines.extend(["", "#" * level + " " + text, ""])
                elif style.startswith("List"):
                    lines.append("- " + text)
                else:
                    lines.extend([text, ""])
            if budget < 0:
                what = f"more than {limits.max_text_chars:,} characters of text"
                raise over_limit(source, what, "max_text_chars", limits.max_text_chars)
        title = (document.core_properties.title or "").strip() or first_heading
    except DocumentError:
        raise
    # python-docx reports damage with whatever the layer below raised (BadZipFile, KeyError, lxml errors, ...).
    except Exception as exc:
        raise DocumentParseError(source, f"cannot read DOCX: {type(exc).__name__}: {exc}") from exc
    if title:
        metadata["title"] = title
    return to_documents("\n".join(lines), source, metadata)


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
