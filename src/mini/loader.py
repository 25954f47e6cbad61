"""mini-rag 0.1.3's `DocumentLoader` (file -> text), kept so 0.1.3 code runs: a thin layer over `mini.ingest.loaders`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mini._deprecation import warn_renamed
from mini.ingest.loaders import discover, load_file

__all__ = ["DocumentLoader"]


def _text_of(path: str | Path) -> str:
    # One file may parse into several documents (a PDF's pages): 0.1.3 returned one string per file.
    return "\n\n".join(document.text for document in load_file(path))


class DocumentLoader:
    """0.1.3's loader: each file's text as one string. Formats are the new loaders' (`SUPPORTED_SUFFIXES`:
    txt, md, html, pdf, docx, json, jsonl); images (0.1.3's OCR through MarkItDown) are not supported.

    Blocking, like 0.1.3's: async code should use `mini.ingest.loaders.load_file_async`."""

    def __init__(self) -> None:
        warn_renamed(
            "mini.loader.DocumentLoader", "mini.ingest.loaders.load_file (or AgenticRAG.index_document)"
        )

    def load(self, document_path: str | Path) -> str:
        """The text of one file (a PDF's pages joined by blank lines); raises a `DocumentError` naming it."""
        return _text_of(document_path)

    def load_documents(self, document_paths: Sequence[str | Path]) -> list[str]:
        """The text of each file, in the order given."""
        return [_text_of(path) for path in document_paths]

    def load_documents_from_directory(self, directory_path: str | Path) -> list[str]:
        """The text of every supported file under the directory, in path order.

        Unlike 0.1.3 (every entry of the folder, whatever its type), sub-folders are included and hidden or
        unsupported files are skipped: the rules of `mini.ingest.loaders.discover`."""
        return [_text_of(path) for path in discover([directory_path])]
