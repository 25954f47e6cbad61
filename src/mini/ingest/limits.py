"""Per-file parsing limits, and the zip inspection that enforces them before a DOCX parser touches a member.

Why: a 1.6 MB .docx whose `word/document.xml` inflates to 419 MB ran for over 300 s at 2.3 GB RSS, because
python-docx reads each member whole (`ZipFile.read`). Every limit here is checked while reading, before the
memory or time is spent, and a file over one fails alone with a `DocumentLimitError` naming the limit.

What bounds what (a worker thread cannot be killed, so time is bounded by bounding the work):
- DOCX (any zip container): each member's declared uncompressed size, their total, and the compression ratio
  are checked from the central directory, then each deflated member is inflated once in bounded steps to prove
  its declared size is true (see `check_archive`); python-docx then reads at most what was declared.
- PDF: the page count before any page is read, and the extracted characters after each page (pdfium is asked
  for a page's character count before its text is copied out).
- HTML: the markup size before BeautifulSoup builds its tree (~18x the markup in memory, ~0.6 s per MB with
  markdownify); nesting deeper than `HTML_MAX_DEPTH` is flattened to text, so any depth parses.
- JSON: nesting beyond what Python's parser allows (about 1,000 levels) is a limit error, not a RecursionError.
- Plain text and Markdown have no size limit: their memory is a small multiple of the file's own size, and
  chunking runs in bounded segments (`chunking.SEGMENT_CHARS`), so its time is linear.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from dataclasses import dataclass, fields
from typing import BinaryIO

from mini._checks import at_least
from mini.errors import DocumentLimitError, DocumentParseError

__all__ = ["HTML_MAX_DEPTH", "ParseLimits", "check_archive", "over_limit"]

_MiB = 1 << 20

# Deeper HTML is flattened to text: markdownify recurses ~3 Python frames per level and fails near 330 levels
# from a fresh thread (measured with the default recursion limit of 1,000); real pages nest 20-60 deep.
HTML_MAX_DEPTH = 200

# The ratio check applies above this size only: small members (content types, relationships) compress
# 100:1 routinely, and a small member cannot cost much however it compresses.
_RATIO_FLOOR_BYTES = 1 * _MiB
# Inflation steps while verifying a member's true size: memory stays at about this much per step.
_STEP_BYTES = 1 * _MiB
# A zip local file header: signature, versions, flags, method, time, date, CRC, sizes, name and extra lengths.
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """How far one file may expand while it is parsed; pass `Ingestor(parse_limits=ParseLimits(...))` to raise
    one. The defaults are chosen so that no ordinary document reaches them (reasons inline)."""

    # A DOCX part python-docx parses as XML: WordprocessingML spends 5-10 bytes of markup per character of
    # text, so 64 MiB is a ~3,000-page document; lxml holds about 5x that while it walks it.
    max_member_bytes: int = 64 * _MiB
    # All members together (python-docx reads every part into memory, pictures included): a large illustrated
    # report is tens of MB; 256 MiB is far beyond that and still fits a small server.
    max_expanded_bytes: int = 256 * _MiB
    # Deflated XML compresses 5-20x, highly repetitive tables ~50x; an expansion bomb is 250-1000x.
    max_compression_ratio: int = 100
    # Text extracted from one PDF or DOCX: 20 M characters is ~10,000 pages of prose, and chunking it at the
    # default size makes ~25,000 chunks (the pipeline holds all of one file's vectors until its commit).
    max_text_chars: int = 20_000_000
    # Pages of one PDF: pdfium loads each page's content; reference manuals run to a few thousand pages.
    max_pdf_pages: int = 10_000
    # HTML markup: the largest real pages (the HTML standard on one page) are ~13 MB; 20 MiB takes ~12 s and
    # ~360 MB to parse and convert (measured: 10 MB in 5.9 s, +177 MB RSS).
    max_html_bytes: int = 20 * _MiB

    def __post_init__(self) -> None:
        at_least(1, **{field.name: getattr(self, field.name) for field in fields(self)})


def over_limit(source: str, what: str, limit: str, value: int) -> DocumentLimitError:
    """The error for a file over `ParseLimits.<limit>` (its value `value`): says which and how to raise it."""
    return DocumentLimitError(
        source,
        f"{what}, over the limit of {value:,} (raise it with Ingestor(parse_limits=ParseLimits({limit}=...)))",
        limit=limit,
    )


def check_archive(source: str, archive: zipfile.ZipFile, fileobj: BinaryIO, limits: ParseLimits) -> None:
    """Refuse a zip container (`archive`, opened on `fileobj`) that would expand past `limits`.

    First from the central directory alone (no inflating): each member's declared size, their total, the
    compression ratio, and only stored or deflated members (bzip2/LZMA cannot be inflated in bounded steps
    by zipfile, and OOXML allows neither). Then each deflated member is inflated once, in steps of at most
    1 MiB, and refused if it yields more than it declared: CPython's `ZipFile.read` inflates a whole member in
    one call and only then cuts it to the declared size, so a header that understates the size would
    otherwise cost the real size in memory. After this, every read yields at most the declared size.
    """
    members = archive.infolist()
    total = 0
    for info in members:
        name = info.filename
        if info.flag_bits & 0x1:
            raise DocumentParseError(source, f"member {name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise DocumentParseError(source, f"member {name!r} uses an unsupported compression method")
        if info.file_size > limits.max_member_bytes:
            what = f"member {name!r} expands to {info.file_size:,} bytes"
            raise over_limit(source, what, "max_member_bytes", limits.max_member_bytes)
        total += info.file_size
        if total > limits.max_expanded_bytes:
            what = f"its members expand to more than {limits.max_expanded_bytes:,} bytes"
            raise over_limit(source, what, "max_expanded_bytes", limits.max_expanded_bytes)
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _RATIO_FLOOR_BYTES and ratio > limits.max_compression_ratio:
            what = f"member {name!r} is compressed {ratio:,.0f}:1 (an expansion bomb?)"
            raise over_limit(source, what, "max_compression_ratio", limits.max_compression_ratio)
    for info in members:
        if info.compress_type == zipfile.ZIP_DEFLATED and _inflates_past(fileobj, info):
            raise DocumentLimitError(
                source,
                f"member {info.filename!r} expands past the size its header declares (crafted or corrupt)",
            )


def _inflates_past(fileobj: BinaryIO, info: zipfile.ZipInfo) -> bool:
    """Whether the member's deflate stream yields more than `info.file_size` bytes (inflated in bounded steps,
    nothing kept). The data is found the way zipfile finds it: after the local header at `header_offset`."""
    fileobj.seek(info.header_offset)
    header = fileobj.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
        return False  # not where the directory says: zipfile itself refuses to open this member
    *_, name_length, extra_length = _LOCAL_HEADER.unpack(header)
    fileobj.seek(info.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    produced = 0
    remaining = info.compress_size
    pending = b""
    try:
        while not inflater.eof:
            if not pending:
                pending = fileobj.read(min(remaining, _STEP_BYTES)) if remaining > 0 else b""
                if not pending:
                    produced += len(inflater.flush())  # what zlib still holds: a few hundred bytes at most
                    break
                remaining -= len(pending)
            produced += len(inflater.decompress(pending, _STEP_BYTES))
            pending = inflater.unconsumed_tail
            if produced > info.file_size:
                return True
    except zlib.error:
        return False  # corrupt data: zipfile reports it when the member is read
    return produced > info.file_size
