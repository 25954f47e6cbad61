"""Offline answers without an LLM: the retrieved sentences that best match the question, each cited `[n]`.

Scoring mixes meaning and words: cosine similarity of sentence and question embeddings (same model as
retrieval), plus the IDF-weighted share of the question's terms that a sentence contains. The text
handling is pure; the only I/O is one batched embedding call.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mini.types import RetrievalResult

if TYPE_CHECKING:
    from mini.embeddings.base import EmbeddingModel

NO_CONTEXT_ANSWER = "I could not find anything relevant to this question in the indexed documents."
LOW_CONFIDENCE_PREFIX = "I could not find a direct answer in the documents. The closest passage says: "

MAX_CANDIDATES = 120  # bounds the embedding work per question
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "about",
        "after",
        "all",
        "also",
        "any",
        "before",
        "being",
        "between",
        "both",
        "each",
        "few",
        "more",
        "most",
        "much",
        "many",
        "other",
        "over",
        "same",
        "should",
        "some",
        "such",
        "through",
        "under",
        "until",
        "very",
    ]
)
_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"“(\[]?[A-Z0-9])")
_LINE_MARKUP = re.compile(r"^\s*(?:#{1,6}\s+|[-*+•]\s+|\d+[.)]\s+|>\s*)")
_HEADING = re.compile(r"^\s*#{1,6}\s")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}")


def terms(text: str) -> list[str]:
    """Lowercased content words with a light plural/verb-suffix stem, for lexical overlap."""
    out = []
    for word in _WORD.findall(text.lower()):
        if word in _STOPWORDS or len(word) < 2:
            continue
        for suffix in ("ing", "ies", "es", "ed", "s"):
            if len(word) > len(suffix) + 3 and word.endswith(suffix):
                word = word[: -len(suffix)]
                break
        out.append(word)
    return out


def split_sentences(text: str) -> list[str]:
    """Statements of a chunk: Markdown headings and table rules dropped, bullet/quote markers removed."""
    sentences = []
    for line in text.splitlines():
        # Headings ("## Opening hours") name a topic without answering anything; they used to outscore the
        # sentence below them on word overlap.
        if _TABLE_RULE.match(line) or _HEADING.match(line):
            continue
        line = _LINE_MARKUP.sub("", line).replace("|", " ").strip()
        line = re.sub(r"[*_`]{1,3}", "", line)
        for piece in _SENTENCE_END.split(line):
            piece = " ".join(piece.split())
            if not piece:
                continue
            words = len(piece.split())
            # Unpunctuated lines are titles and labels ("Bulky items", "Recycling Schedule 2025"), not
            # statements, unless they run long enough to be prose that lost its full stop.
            # Questions (FAQ headings) restate what was asked rather than answer it.
            if piece[-1] == "?":
                continue
            if (words >= 3 and piece[-1] in ".!") or words >= 10:
                sentences.append(piece)
    return sentences


@dataclass(frozen=True, slots=True)
class Candidate:
    number: int  # 1-based position of the chunk, i.e. its citation number
    position: int  # sentence index within the chunk
    text: str


def candidates(chunks: Sequence[RetrievalResult], *, limit: int = MAX_CANDIDATES) -> list[Candidate]:
    out: list[Candidate] = []
    seen: set[str] = set()
    for number, chunk in enumerate(chunks, start=1):
        for position, sentence in enumerate(split_sentences(chunk.text)):
            key = sentence.lower()
            if key in seen:
                continue
            seen.add(key)
            out.append(Candidate(number, position, sentence))
            if len(out) >= limit:
                return out
    return out


def lexical_scores(question: str, sentences: Sequence[str]) -> list[float]:
    """IDF-weighted fraction of the question's terms present in each sentence (0..1)."""
    query_terms = set(terms(question))
    if not query_terms or not sentences:
        return [0.0] * len(sentences)
    sentence_terms = [set(terms(s)) for s in sentences]
    n = len(sentences)
    idf = {t: math.log(1.0 + n / (1 + sum(t in st for st in sentence_terms))) + 0.1 for t in query_terms}
    total = sum(idf.values())
    return [sum(idf[t] for t in query_terms if t in st) / total for st in sentence_terms]


def select(
    cands: Sequence[Candidate], scores: Sequence[float], *, max_sentences: int = 3, keep_ratio: float = 0.85
) -> list[Candidate]:
    """The best sentences: at most `max_sentences`, each scoring at least `keep_ratio` of the best."""
    ranked = sorted(zip(scores, range(len(cands)), strict=True), key=lambda pair: (-pair[0], pair[1]))
    if not ranked:
        return []
    best = ranked[0][0]
    return [cands[i] for score, i in ranked[:max_sentences] if score >= best * keep_ratio]


def compose(selected: Sequence[Candidate]) -> str:
    """Sentences with their `[n]` before the final full stop ("... $25 per item [2].")."""
    parts = []
    for cand in selected:
        text = cand.text
        last_word = text.rsplit(" ", 1)[-1]
        if text[-1] in ".!" and "." not in last_word[:-1]:
            parts.append(f"{text[:-1]} [{cand.number}]{text[-1]}")
        else:  # no final punctuation, or it belongs to an abbreviation ("5 p.m.")
            parts.append(f"{text} [{cand.number}]")
    return " ".join(parts)


class ExtractiveGenerator:
    """Answers from the retrieved chunks alone: no LLM, no network beyond the embedding model."""

    name = "extractive"

    def __init__(
        self, *, max_sentences: int = 3, semantic_weight: float = 1.0, lexical_weight: float = 0.5
    ) -> None:
        self.max_sentences = max_sentences
        self.semantic_weight = semantic_weight
        self.lexical_weight = lexical_weight

    async def answer(
        self, question: str, chunks: Sequence[RetrievalResult], embedding_model: EmbeddingModel | None = None
    ) -> str:
        cands = candidates(chunks)
        if not cands:
            return NO_CONTEXT_ANSWER
        lexical = lexical_scores(question, [c.text for c in cands])
        semantic = [0.0] * len(cands)
        if embedding_model is not None:
            vectors = await embedding_model.embed_async(
                [question, *(c.text for c in cands)], input_type="document"
            )
            semantic = [float(x) for x in vectors[1:] @ vectors[0]]
        # A small bonus for higher-ranked chunks breaks ties in favour of what retrieval trusted most.
        scores = [
            self.semantic_weight * s + self.lexical_weight * lex + 0.02 / c.number
            for s, lex, c in zip(semantic, lexical, cands, strict=True)
        ]
        chosen = select(cands, scores, max_sentences=self.max_sentences)
        answer = compose(chosen)
        if max(lexical) == 0.0 and (embedding_model is None or max(semantic) < 0.3):
            return LOW_CONFIDENCE_PREFIX + compose(chosen[:1])
        return answer
