"""Hand-written PDF 1.4 files for fixtures (the sample corpus, loader tests): no PDF-writing dependency."""

from __future__ import annotations


def pdf_escape(text: str) -> str:
    """Text for a PDF string literal `( ... )`."""
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def serialize(objects: list[bytes], *, info: int, trailer_extra: bytes = b"") -> bytes:
    """A complete PDF from numbered object bodies (object 1 is the catalog), with its xref table."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        info,
        trailer_extra,
        xref,
    )
    return bytes(out)
