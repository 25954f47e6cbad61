"""Candidates and an in-process chat model for reranker tests."""

from __future__ import annotations

from collections.abc import Callable

from mini.testing.fakes import ScriptedLLM
from mini.types import RetrievalResult


def candidates(n: int, *, text: str = "passage {i}") -> list[RetrievalResult]:
    """`n` retrieval hits `c0`, `c1`, ... with falling retrieval scores, in retrieval order."""
    return [
        RetrievalResult(id=f"c{i}", text=text.format(i=i), score=1.0 - i / (n + 1), metadata={"source": "s"})
        for i in range(n)
    ]


def passage_of(prompt: str) -> str:
    """The passage of an `LLMReranker` scoring prompt."""
    return prompt.split("Passage:\n", 1)[1].split("\n\n", 1)[0]


def scripted_llm(reply: Callable[[str], str], *, delay: float = 0.01) -> ScriptedLLM:
    """A `ScriptedLLM` scoring each passage with `reply(passage text)`."""
    return ScriptedLLM(lambda prompt: reply(passage_of(prompt)), delay=delay)
