"""Prompt builders and parsers for answering and query rewriting. Pure functions: no I/O, no event loop."""

from __future__ import annotations

import re
from collections.abc import Sequence

from mini.types import RetrievalResult

Message = dict[str, str]

ANSWER_SYSTEM = (
    "You answer questions using only the numbered sources the user provides. "
    "Cite every statement with the number of its source in square brackets, like [1] or [2][3]. "
    "If the sources do not contain the answer, say that you do not know; do not invent facts."
)

REWRITE_SYSTEM = (
    "You turn a user's question into alternative search queries for a document search engine. "
    "Return exactly {n} search queries, one per line, with no numbering, quotes or commentary. "
    "Each query should rephrase the question or focus on a different aspect of it."
)


def format_context(chunks: Sequence[RetrievalResult], *, max_chars_per_chunk: int = 4000) -> str:
    """Number the chunks `[1]`, `[2]`, ... in the order given; citations in the answer refer to these numbers."""
    blocks = []
    for number, chunk in enumerate(chunks, start=1):
        text = " ".join(chunk.text.split())[:max_chars_per_chunk]
        source = chunk.source or chunk.id
        blocks.append(f"[{number}] (source: {source}) {text}")
    return "\n\n".join(blocks)


def answer_messages(question: str, context: str, *, history: Sequence[Message] = ()) -> list[Message]:
    user = (
        f"Sources:\n{context}\n\nQuestion: {question.strip()}" if context else f"Question: {question.strip()}"
    )
    return [{"role": "system", "content": ANSWER_SYSTEM}, *history, {"role": "user", "content": user}]


def rewrite_messages(question: str, *, n: int) -> list[Message]:
    return [
        {"role": "system", "content": REWRITE_SYSTEM.format(n=n)},
        {"role": "user", "content": question.strip()},
    ]


_NUMBERING = re.compile(r"^\s*(?:[-*•]|\d+[.)]|\(\d+\))\s*")


def parse_rewrites(text: str, *, original: str, n: int) -> list[str]:
    """The model's rewrites, cleaned, deduplicated (case-insensitively, and against the original), at most `n`."""
    seen = {original.strip().lower()}
    queries: list[str] = []
    for line in text.splitlines():
        query = _NUMBERING.sub("", line).strip().strip('"').strip("'").strip()
        if not query or query.lower() in seen:
            continue
        seen.add(query.lower())
        queries.append(query)
        if len(queries) == n:
            break
    return queries
