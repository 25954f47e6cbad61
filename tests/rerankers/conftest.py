"""Candidates and an in-process chat model for reranker tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from mini.llms.base import Completion, Delta, Message, Tool, Usage
from mini.types import RetrievalResult


def candidates(n: int, *, text: str = "passage {i}") -> list[RetrievalResult]:
    """`n` retrieval hits `c0`, `c1`, ... with falling retrieval scores, in retrieval order."""
    return [
        RetrievalResult(id=f"c{i}", text=text.format(i=i), score=1.0 - i / (n + 1), metadata={"source": "s"})
        for i in range(n)
    ]


class ScriptedLLM:
    """An in-process chat model whose reply is `reply(passage text)`; records calls and concurrency."""

    name = "fake:scripted"

    def __init__(self, reply: Callable[[str], str], *, delay: float = 0.01) -> None:
        self.reply = reply
        self.delay = delay
        self.usage = Usage()
        self.calls: list[dict[str, Any]] = []
        self.in_flight = 0
        self.peak_in_flight = 0

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tools: Sequence[Tool] | None = None,
    ) -> Completion:
        passage = messages[-1]["content"].split("Passage:\n", 1)[1].split("\n\n", 1)[0]
        self.calls.append({"passage": passage, "temperature": temperature, "max_tokens": max_tokens})
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            return Completion(text=self.reply(passage), model="fake")
        finally:
            self.in_flight -= 1

    def stream(self, messages: Sequence[Message], **kwargs: Any) -> AsyncIterator[Delta]:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None
