"""Resolve `[n]` markers in answers to the chunks they cite, for whole answers and token streams. Pure."""

from __future__ import annotations

import re
from collections.abc import Sequence

from mini.types import Citation, RetrievalResult

_MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_MAX_PENDING = 16  # a '[' with no ']' within this many characters is not a citation marker


def cited_numbers(text: str) -> list[int]:
    """Numbers in `[1]`, `[2, 3]` markers, unique, in order of first appearance."""
    seen: dict[int, None] = {}
    for match in _MARKER.finditer(text):
        for part in match.group(1).split(","):
            seen.setdefault(int(part), None)
    return list(seen)


def citation_for(number: int, chunks: Sequence[RetrievalResult]) -> Citation | None:
    if not 1 <= number <= len(chunks):
        return None  # the model cited a source it was not given: drop it rather than point at nothing
    chunk = chunks[number - 1]
    return Citation(number=number, chunk_id=chunk.id, source=chunk.source, text=chunk.text, score=chunk.score)


def build_citations(answer: str, chunks: Sequence[RetrievalResult]) -> list[Citation]:
    return [c for c in (citation_for(n, chunks) for n in cited_numbers(answer)) if c is not None]


class CitationStream:
    """Feeds streamed text and returns each citation once, as soon as its marker is complete."""

    def __init__(self, chunks: Sequence[RetrievalResult]) -> None:
        self._chunks = chunks
        self._pending = ""
        self._emitted: set[int] = set()
        self.citations: list[Citation] = []

    def feed(self, delta: str) -> list[Citation]:
        text = self._pending + delta
        if "[" not in text:  # most deltas: no marker, none begun (a pending one starts with "[")
            return []
        new: list[Citation] = []
        for number in cited_numbers(text):
            if number in self._emitted:
                continue
            citation = citation_for(number, self._chunks)
            if citation is not None:
                self._emitted.add(number)
                new.append(citation)
        # Keep an unfinished "[12" for the next delta; everything before it is fully scanned.
        cut = text.rfind("[")
        self._pending = (
            text[cut:] if cut != -1 and "]" not in text[cut:] and len(text) - cut <= _MAX_PENDING else ""
        )
        self.citations.extend(new)
        return new
