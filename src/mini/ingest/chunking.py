"""Splitting documents into chunks with stable ids: pure functions, no event loop (only `load_tokenizer` reads a file)."""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mini.errors import InvalidInputError
from mini.types import Chunk, Document

if TYPE_CHECKING:
    from semantic_text_splitter import MarkdownSplitter, TextSplitter
    from tokenizers import Tokenizer

__all__ = [
    "CHARS_PER_TOKEN",
    "MARKDOWN_FILE_TYPES",
    "SEGMENT_CHARS",
    "check_sizes",
    "chunk_documents",
    "chunk_id",
    "chunk_text",
    "content_hash",
    "load_tokenizer",
]

# Without a tokenizer, sizes are approximated in characters: English prose averages about 4 characters per
# WordPiece token, so chunking works without loading any model.
CHARS_PER_TOKEN = 4

# Loaders emit Markdown for these (HTML via markdownify, DOCX headings as '#'), so they split at headings.
MARKDOWN_FILE_TYPES = frozenset({"md", "html", "docx"})

# Texts longer than this are split one segment at a time, each cut at a paragraph break. The splitter's time
# grows faster than its input (prose, character sizing: 1 MB 7 ns/char, 5 MB 25, 52 MB 230, i.e. 12 s;
# Markdown 5 MB 169 ns/char), so whole, a 50 MB file took 12 s to chunk and a 500 MB one would take ~20 min;
# in segments both are linear (~7 ns/char). Chunks are the same but for the one or two at each cut, and a text
# shorter than this is split exactly as before.
SEGMENT_CHARS = 1_000_000

# Defaults: the embedder truncates at 256 tokens including [CLS] and [SEP]; 250 leaves headroom for both.
DEFAULT_CHUNK_TOKENS = 250
DEFAULT_OVERLAP_TOKENS = 40


def content_hash(text: str) -> str:
    """The first 32 hex characters of the SHA-256 of `text` (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def chunk_id(source: str, content_hash: str) -> str:
    """A stable id for a chunk: the same text from the same source always gets the same id.

    This is what makes ingestion idempotent: re-ingesting an unchanged file upserts the same ids.
    """
    return hashlib.sha256(f"{source}\x00{content_hash}".encode()).hexdigest()[:32]


def load_tokenizer(model_dir: str | Path) -> Tokenizer:
    """Load `model_dir/tokenizer.json` for counting tokens: truncation and padding switched off.

    The bundled file truncates at 128 and pads to a fixed length, which would make every count wrong.
    Cached per directory: callers that ask for it per file get the same object, so the splitter cache below
    hits instead of rebuilding a splitter (~40 ms) every time. Treat it as read-only.
    """
    return _load_tokenizer(str(Path(model_dir).resolve()))


@functools.lru_cache(maxsize=8)
def _load_tokenizer(model_dir: str) -> Tokenizer:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def chunk_text(
    text: str,
    *,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
    tokenizer: Tokenizer | None = None,
    markdown: bool = False,
) -> list[str]:
    """Split `text` into pieces of at most `chunk_tokens`, consecutive pieces sharing up to `overlap_tokens`.

    With a `tokenizers.Tokenizer`, sizes are counted in its tokens (special tokens excluded); without one,
    in characters at `CHARS_PER_TOKEN` per token. Splits prefer the largest semantic unit that fits
    (paragraphs, then sentences, then words; with `markdown=True` headings and blocks first).
    Whitespace-only pieces are dropped.

    The overlap is made of whole units of the level a boundary falls at (semantic-text-splitter's rule): inside
    a long paragraph the next chunk repeats the last sentences that fit; a boundary between paragraphs longer
    than the overlap gets none, which is fine because it is a natural break already.
    For exact token counts pass a tokenizer from `load_tokenizer` (truncation off, or counts are capped).
    """
    check_sizes(chunk_tokens, overlap_tokens)
    return list(_pieces(text, _splitter(chunk_tokens, overlap_tokens, tokenizer, markdown)))


def _pieces(text: str, splitter: TextSplitter | MarkdownSplitter) -> Iterator[str]:
    """The non-blank chunks of `text`, one segment (`SEGMENT_CHARS`) at a time."""
    if not text or text.isspace():  # isspace, not strip: no copy of a large text
        return
    for segment in _segments(text, SEGMENT_CHARS):
        for piece in splitter.chunks(segment):
            if piece.strip():
                yield piece


def _segments(text: str, size: int) -> Iterator[str]:
    """`text` in consecutive pieces of at most `size` characters (all of it if it fits). Each is cut after the
    last blank line in its second half, else the last line break, else the last space, else at `size`."""
    start = 0
    while len(text) - start > size:
        end = start + size
        cut = end
        for mark in ("\n\n", "\n", " "):
            found = text.rfind(mark, start + size // 2, end)
            if found != -1:
                cut = found + len(mark)
                break
        yield text[start:cut]
        start = cut
    yield text[start:] if start else text


def chunk_documents(
    documents: Iterable[Document],
    *,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
    tokenizer: Tokenizer | None = None,
) -> list[Chunk]:
    """Chunk documents into `Chunk`s with stable ids.

    - Markdown-aware splitting for documents whose `metadata["file_type"]` is in `MARKDOWN_FILE_TYPES`.
    - `Chunk.index` counts 0, 1, 2, ... per source across all of that source's documents (the pages of a PDF
      share one source), in the order the documents are given.
    - A text that occurs twice in one source is kept once (its id would collide anyway).
    - Chunk metadata is a copy of the document's; `Chunk.store_metadata()` adds source, index and hash.
    """
    check_sizes(chunk_tokens, overlap_tokens)
    chunks: list[Chunk] = []
    next_index: dict[str, int] = {}
    seen: dict[str, set[str]] = {}
    for document in documents:
        markdown = document.metadata.get("file_type") in MARKDOWN_FILE_TYPES
        splitter = _splitter(chunk_tokens, overlap_tokens, tokenizer, markdown)
        hashes = seen.setdefault(document.source, set())
        # Lazily, a segment at a time: no list of a large document's pieces next to its chunks.
        for piece in _pieces(document.text, splitter):
            digest = content_hash(piece)
            if digest in hashes:
                continue
            hashes.add(digest)
            index = next_index.get(document.source, 0)
            next_index[document.source] = index + 1
            chunks.append(
                Chunk(
                    id=chunk_id(document.source, digest),
                    text=piece,
                    source=document.source,
                    index=index,
                    content_hash=digest,
                    metadata=dict(document.metadata),
                )
            )
    return chunks


def check_sizes(chunk_tokens: int, overlap_tokens: int) -> None:
    """`InvalidInputError` unless 1 <= chunk_tokens and 0 <= overlap_tokens < chunk_tokens."""
    if chunk_tokens < 1:
        raise InvalidInputError(f"chunk_tokens must be at least 1, got {chunk_tokens}")
    if not 0 <= overlap_tokens < chunk_tokens:
        raise InvalidInputError(
            f"overlap_tokens must be at least 0 and less than chunk_tokens ({chunk_tokens}), got {overlap_tokens}"
        )


# Building a splitter from a Hugging Face tokenizer costs ~40 ms (it copies the tokenizer into Rust), more
# than splitting a typical document, so splitters are reused. Keyed by the tokenizer's id; the entry holds the
# tokenizer itself so the id cannot be recycled while cached.
_SplitterKey = tuple[int, int, int, bool]
_SPLITTERS: dict[_SplitterKey, tuple[Any, TextSplitter | MarkdownSplitter]] = {}
_SPLITTERS_LOCK = threading.Lock()
_MAX_SPLITTERS = 32


def _splitter(
    chunk_tokens: int, overlap_tokens: int, tokenizer: Tokenizer | None, markdown: bool
) -> TextSplitter | MarkdownSplitter:
    from semantic_text_splitter import MarkdownSplitter, TextSplitter

    key = (id(tokenizer), chunk_tokens, overlap_tokens, markdown)
    with _SPLITTERS_LOCK:
        cached = _SPLITTERS.get(key)
    if cached is not None and cached[0] is tokenizer:
        return cached[1]
    cls = MarkdownSplitter if markdown else TextSplitter
    splitter: TextSplitter | MarkdownSplitter
    if tokenizer is None:
        splitter = cls(chunk_tokens * CHARS_PER_TOKEN, overlap=overlap_tokens * CHARS_PER_TOKEN)
    else:
        splitter = cls.from_huggingface_tokenizer(tokenizer, chunk_tokens, overlap=overlap_tokens)
    with _SPLITTERS_LOCK:
        if len(_SPLITTERS) >= _MAX_SPLITTERS:
            _SPLITTERS.pop(next(iter(_SPLITTERS)))  # oldest first; a handful of configurations is typical
        _SPLITTERS[key] = (tokenizer, splitter)
    return splitter
