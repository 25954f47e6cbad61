"""Many questions, each its own pipeline (no stage barrier), at most `concurrency` at once; failures per item.

A question's answer is ready after its own latency: one slow or failing question never holds back the others,
unlike a stage-by-stage batch (rewrite all, then retrieve all, then answer all), whose first answer arrives only
after the slowest question of every stage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mini._checks import at_least
from mini.errors import InvalidInputError
from mini.types import RAGResponse

DEFAULT_CONCURRENCY = 8


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One question's outcome: a response, or the error that stopped it (never both)."""

    index: int
    question: str
    response: RAGResponse | None = None
    error: BaseException | None = None
    elapsed_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {"index": self.index, "question": self.question, "ok": self.ok}
        if self.response is not None:
            item.update(self.response.to_dict())
        if self.error is not None:
            item["error"] = {"type": type(self.error).__name__, "message": str(self.error)}
        item["elapsed_ms"] = round(self.elapsed_ms, 3)
        return item


def check_batch(questions: Sequence[str], concurrency: int) -> list[str]:
    if isinstance(questions, str):
        raise InvalidInputError("questions must be a list of strings, not a single string")
    at_least(1, concurrency=concurrency)
    return list(questions)


async def iter_batch(
    answer: Callable[[str], Awaitable[RAGResponse]], questions: Sequence[str], *, concurrency: int
) -> AsyncIterator[BatchResult]:
    """Results in completion order. `concurrency` workers pull questions in input order, so at most that many
    pipelines (and their tasks) exist however long the list. Closing the iterator early cancels the workers.
    Arguments are checked by the caller (`check_batch`), before the generator starts."""
    pending = iter(enumerate(questions))
    results: asyncio.Queue[BatchResult] = asyncio.Queue()

    async def worker() -> None:
        for index, question in pending:  # a shared iterator: each question is taken by exactly one worker
            started = time.perf_counter()
            try:
                response = await answer(question)
            except Exception as exc:  # reported per question; the batch goes on
                result = BatchResult(index, question, error=exc, elapsed_ms=_ms(started))
            else:
                result = BatchResult(index, question, response=response, elapsed_ms=_ms(started))
            results.put_nowait(result)

    workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, len(questions)))]
    try:
        for _ in questions:
            yield await results.get()
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000.0
