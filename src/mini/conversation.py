"""Conversations: follow-up questions answered with their history, through the one query pipeline.

A turn condenses the message with the earlier turns into a standalone question (one LLM call; skipped without
history; without an LLM the message is searched as written, with a warning), then answers that question
exactly as `AgenticRAG.query`/`stream` would (rewrite, retrieve, rerank, generate). Only a completed answer
becomes history: a failed or abandoned turn is never context for the next one.

    chat = rag.conversation()
    chat.ask("Who maintains the bridge?")
    chat.ask("When was it last inspected?")      # "it" resolved: metadata["condensed_question"]

The server's `/v1/chat/stream` sessions and `mini chat` use `chat_events`, the same turn as events.
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mini import _portal
from mini.errors import InvalidInputError, ProviderError, error_payload, log_failure
from mini.query.pipeline import Options, QueryPipeline, Run, check_question, degrade_or_raise
from mini.stores.base import VectorStore
from mini.types import RAGResponse, StreamEvent

log = logging.getLogger("mini.query")

CONDENSE_SYSTEM = (
    "You rewrite the last message of a conversation as a standalone question for a document search engine. "
    "Resolve pronouns and references (it, they, that, there, then) with the conversation so the question "
    "can be understood without it. Keep the user's language and intent; do not answer the question. "
    "Reply with the question only, on one line."
)
# Earlier answers are cut to this many characters in the condense prompt: their gist is enough to resolve
# references, and the prompt stays small whatever the history holds.
_ANSWER_CHARS_IN_PROMPT = 1_000
_CONDENSE_MAX_TOKENS = 200
_LABEL = re.compile(r"^\s*(?:standalone question|question)\s*:\s*", re.IGNORECASE)
DEFAULT_MAX_TURNS = 20


@dataclass(frozen=True, slots=True)
class Turn:
    """One completed exchange."""

    question: str
    answer: str
    at: float = field(default_factory=time.time)  # wall-clock time, for clients

    def to_dict(self) -> dict[str, Any]:
        return {"question": self.question, "answer": self.answer, "at": self.at}


def as_turns(history: Iterable[Turn | tuple[str, str] | Mapping[str, Any]]) -> list[Turn]:
    """Turns from Turns, (question, answer) pairs, or OpenAI-style `{"role", "content"}` messages (a user
    message and the assistant message after it make a turn; system messages are not history)."""
    turns: list[Turn] = []
    pending: str | None = None
    for item in history:
        if isinstance(item, Turn):
            turns.append(item)
        elif isinstance(item, tuple) and len(item) == 2:
            turns.append(Turn(str(item[0]), str(item[1])))
        elif isinstance(item, Mapping):
            role, content = item.get("role"), item.get("content")
            if not isinstance(content, str):
                raise InvalidInputError("history messages need a string `content`")
            if role == "user":
                pending = content
            elif role == "assistant" and pending is not None:
                turns.append(Turn(pending, content))
                pending = None
        else:
            raise InvalidInputError(
                f"history items are Turns, (question, answer) pairs or role/content messages, not {item!r:.60}"
            )
    return turns


def condense_messages(history: Sequence[Turn], message: str) -> list[dict[str, str]]:
    lines = []
    for turn in history:
        lines.append(f"User: {' '.join(turn.question.split())}")
        lines.append(f"Assistant: {' '.join(turn.answer.split())[:_ANSWER_CHARS_IN_PROMPT]}")
    user = (
        "Conversation:\n" + "\n".join(lines) + f"\n\nLast message: {message.strip()}\n\nStandalone question:"
    )
    return [{"role": "system", "content": CONDENSE_SYSTEM}, {"role": "user", "content": user}]


def parse_condensed(text: str) -> str:
    """The model's question: its first non-empty line, without a "Question:" label or quotes."""
    for line in text.splitlines():
        question = _LABEL.sub("", line).strip().strip('"').strip("'").strip()
        if question:
            return question
    return ""


async def condense(pipeline: QueryPipeline, history: Sequence[Turn], run: Run) -> None:
    """Set `run.question` to the standalone form of the message it holds, recording how in its metadata.

    The pipeline's fallback rule: a struggling provider (retryable error, already retried) or an empty reply
    leaves the message as written, with a warning; authentication and bad requests raise."""
    message = run.question
    if not history:
        run.metadata["condense"] = "skipped: no history"
        return
    llm = pipeline.parts.llm
    if llm is None:
        run.metadata["condense"] = "skipped: no LLM configured"
        run.warnings.append("no LLM configured: the follow-up was searched as written, without its history")
        return
    since = time.perf_counter()
    try:
        completion = await llm.complete(
            condense_messages(history, message), temperature=0.0, max_tokens=_CONDENSE_MAX_TOKENS
        )
    except ProviderError as exc:
        degrade_or_raise(exc)
        run.metadata["condense"] = "failed"
        run.warnings.append(f"condensing the message with the history failed, searched it as given: {exc}")
        return
    finally:
        run.add_time("condense", since)
    run.usage = run.usage + completion.usage
    question = parse_condensed(completion.text)
    if not question:
        run.metadata["condense"] = "failed"
        run.warnings.append("condensing returned no question, searched the message as given")
        return
    run.metadata["condense"] = "ok"
    run.metadata["condensed_question"] = question
    run.question = question


OnTurn = Callable[[str, str], None]


async def chat_events(
    pipeline: QueryPipeline,
    history: Sequence[Turn],
    message: str,
    options: Options,
    on_turn: OnTurn | None = None,
) -> AsyncIterator[StreamEvent]:
    """One turn as the pipeline's events (`sources`, `token`*, `citation`*, `done` | `error`). `on_turn(message,
    answer)` runs before `done` is yielded, so a client that has seen `done` finds the turn in the history."""
    run = Run(check_question(message), options)
    try:
        await condense(pipeline, history, run)
    except Exception as exc:
        log_failure(log, "chat turn failed", exc)
        yield StreamEvent("error", error_payload(exc))
        return
    events = pipeline.stream(run)
    try:
        async for event in events:
            if event.type == "done" and on_turn is not None:
                on_turn(message, str(event.data.get("answer", "")))
            yield event
    finally:
        await events.aclose()  # type: ignore[attr-defined]  # a closed consumer closes the LLM stream now


async def chat_answer(
    pipeline: QueryPipeline, history: Sequence[Turn], message: str, options: Options
) -> RAGResponse:
    """One turn, answered whole (`chat_events`' counterpart); `original_query` is the message as sent."""
    run = Run(check_question(message), options)
    await condense(pipeline, history, run)
    response = await pipeline.answer(run)
    response.original_query = message
    return response


class HasPipeline(Protocol):
    pipeline: QueryPipeline


class Conversation:
    """A conversation that remembers its last `max_turns` turns (in memory). Async methods with sync twins."""

    def __init__(
        self,
        rag: HasPipeline,
        *,
        history: Iterable[Turn] | None = None,
        max_turns: int = DEFAULT_MAX_TURNS,
        extra_stores: Sequence[VectorStore] = (),
    ) -> None:
        self.pipeline = rag.pipeline
        self.turns: deque[Turn] = deque(as_turns(history or ()), maxlen=max(1, max_turns))
        self.extra_stores = list(extra_stores)

    def reset(self) -> None:
        """Forget the history."""
        self.turns.clear()

    def _options(self, top_k: int | None, filter: Mapping[str, Any] | None, mode: str | None) -> Options:
        return Options(top_k=top_k, filter=filter, mode=mode, extra_stores=self.extra_stores)

    def _remember(self, question: str, answer: str) -> None:
        self.turns.append(Turn(question, answer))

    async def ask_async(
        self,
        message: str,
        *,
        top_k: int | None = None,
        filter: Mapping[str, Any] | None = None,
        mode: str | None = None,
    ) -> RAGResponse:
        """Answer `message` in the context of the history, then remember the turn."""
        options = self._options(top_k, filter, mode)
        response = await chat_answer(self.pipeline, list(self.turns), message, options)
        self._remember(message, response.answer)
        return response

    def stream_async(
        self,
        message: str,
        *,
        top_k: int | None = None,
        filter: Mapping[str, Any] | None = None,
        mode: str | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """`ask_async` as events; the turn is remembered when `done` arrives (never after an `error`)."""
        check_question(message)
        options = self._options(top_k, filter, mode)
        return chat_events(self.pipeline, list(self.turns), message, options, self._remember)

    ask = _portal.sync_twin(ask_async)
    stream = _portal.iterator_twin(stream_async)
