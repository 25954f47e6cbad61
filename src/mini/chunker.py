"""mini-rag 0.1.3's `Chunker` (text -> chunks with `.text` and `.token_count`), a thin layer over
`mini.ingest.chunking.chunk_text`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mini._deprecation import warn_renamed
from mini.errors import InvalidInputError
from mini.ingest.chunking import CHARS_PER_TOKEN, DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_TOKENS, chunk_text

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = ["Chunker", "TextChunk"]


@dataclass(frozen=True, slots=True)
class TextChunk:
    """One piece of the text, shaped like the chunks 0.1.3 returned (chonkie's): `text[start_index:end_index]`
    is `text`; `token_count` is counted as the chunker sized it (see `Chunker`)."""

    text: str
    start_index: int
    end_index: int
    token_count: int

    def __str__(self) -> str:
        return self.text


class Chunker:
    """0.1.3's chunker. Splits as ingestion does (`chunk_text`, Markdown-aware, as 0.1.3's "markdown" recipe
    was): at most `chunk_tokens` per chunk, `overlap_tokens` shared between neighbours.

    Sizes are counted with `tokenizer` if given (a `tokenizers.Tokenizer`, e.g. from
    `mini.ingest.chunking.load_tokenizer`), else estimated at `CHARS_PER_TOKEN` characters per token; the
    reported `token_count` uses the same measure. `lang` is accepted for 0.1.3 code: the splitter finds
    sentence and word boundaries by Unicode rules for every language, so it changes nothing.
    """

    def __init__(
        self,
        lang: str = "en",
        *,
        chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
        overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        if not isinstance(lang, str) or not lang:
            raise InvalidInputError(f"lang must be a language code such as 'en', not {lang!r}")
        warn_renamed("mini.chunker.Chunker", "mini.ingest.chunking.chunk_text (or AgenticRAG.index_document)")
        self.lang = lang
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self.tokenizer = tokenizer

    def chunk(self, text: str) -> list[TextChunk]:
        """The chunks of `text`, in order; empty or whitespace-only text gives none."""
        if not isinstance(text, str):
            raise InvalidInputError(f"text must be a string, not {type(text).__name__}")
        pieces = chunk_text(
            text,
            chunk_tokens=self.chunk_tokens,
            overlap_tokens=self.overlap_tokens,
            tokenizer=self.tokenizer,
            markdown=True,
        )
        chunks = []
        cursor = 0
        for piece in pieces:
            # Pieces are slices of `text` in order; overlapping ones start after the previous start.
            start = text.find(piece, cursor)
            if start < 0:  # not expected; keep the chunk rather than fail on bookkeeping
                start = text.find(piece)
            chunks.append(TextChunk(piece, start, start + len(piece), self._count(piece)))
            cursor = max(start + 1, cursor)
        return chunks

    def _count(self, piece: str) -> int:
        if self.tokenizer is not None:
            return len(self.tokenizer.encode(piece, add_special_tokens=False).ids)
        return math.ceil(len(piece) / CHARS_PER_TOKEN)
