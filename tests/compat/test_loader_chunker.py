"""mini-rag 0.1.3's `mini.loader.DocumentLoader` and `mini.chunker.Chunker`, over the new loaders and splitter."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from mini.chunker import Chunker, TextChunk
from mini.errors import DocumentError, InvalidInputError
from mini.loader import DocumentLoader
from tests.compat._fresh import fresh_warnings  # noqa: F401  (autouse fixture)
from tests.ingest.test_loaders import make_pdf

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the 0.1.3 names warn by design


def test_load_returns_a_pdfs_pages_as_one_string(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(make_pdf([["Budget for education"], ["Budget for roads"]]))
    text = DocumentLoader().load(str(path))
    assert isinstance(text, str)
    assert text.index("education") < text.index("roads")


def test_load_documents_keeps_the_order_given(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("second file")
    (tmp_path / "a.md").write_text("# First\n\nfirst file")
    texts = DocumentLoader().load_documents([tmp_path / "b.txt", str(tmp_path / "a.md")])
    assert texts == ["second file", "# First\n\nfirst file"]


def test_load_documents_from_directory_reads_supported_files_in_path_order(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("bee")
    (tmp_path / "a.txt").write_text("ay")
    (tmp_path / "image.png").write_bytes(b"\x89PNG not text")  # unsupported: skipped, not an error
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.md").write_text("sea")
    assert DocumentLoader().load_documents_from_directory(str(tmp_path)) == ["ay", "bee", "sea"]


def test_load_of_a_missing_file_raises_a_document_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match=r"missing\.pdf"):
        DocumentLoader().load(str(tmp_path / "missing.pdf"))


def test_chunks_have_text_and_token_count_and_cover_the_text() -> None:
    paragraphs = [f"Paragraph {i} talks about topic {i} in a few plain words." * 6 for i in range(20)]
    text = "\n\n".join(paragraphs)
    chunks = Chunker(lang="en").chunk(text)
    assert len(chunks) > 1
    for chunk in chunks:
        assert isinstance(chunk, TextChunk)
        assert text[chunk.start_index : chunk.end_index] == chunk.text
        assert 0 < chunk.token_count <= Chunker().chunk_tokens
    assert all(p.split(" talks")[0] in text for p in paragraphs)
    assert chunks[0].start_index == 0 and chunks[-1].end_index == len(text.rstrip())


def test_chunk_sizes_follow_the_given_limit() -> None:
    text = " ".join(f"word{i}" for i in range(2000))
    chunks = Chunker(chunk_tokens=50, overlap_tokens=0).chunk(text)
    assert max(c.token_count for c in chunks) <= 50
    assert " ".join(c.text for c in chunks) == text


def test_empty_text_gives_no_chunks_and_a_non_string_is_refused() -> None:
    chunker = Chunker()
    assert chunker.chunk("  \n ") == []
    with pytest.raises(InvalidInputError, match="string"):
        chunker.chunk(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="lang"):
        Chunker(lang="")


def test_loader_and_chunker_warn_once_naming_their_replacements(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DocumentLoader()
        DocumentLoader()
        Chunker()
        Chunker()
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(messages) == 2
    assert "mini.ingest.loaders.load_file" in messages[0]
    assert "mini.ingest.chunking.chunk_text" in messages[1]
    assert all(w.filename == __file__ for w in caught)  # attributed to the caller's line
