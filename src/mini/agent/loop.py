"""The agent loop: the model thinks, calls tools, reads their results, and answers with citations.

Each turn streams one model reply. If it asks for tools, all of that turn's calls run concurrently (at most
`max_tool_concurrency` at once, each under `tool_timeout_s`); every result, or the error a tool raised, goes
back to the model as a tool message, and the next turn starts. A reply without tool calls is the answer.
`max_turns`, a token budget and a wall-clock budget stop runaway loops with `BudgetExceededError`, which
carries the transcript so far.

The built-in `search_documents` tool calls the search function it is given (`AgenticRAG` passes its query
pipeline's retrieval and rerank stages, with the run's filter): the agent never sees the RAG object. Every passage it returns gets a number the first
time it is seen ([1], [2], ... across the whole run), so the final answer's `[n]` markers resolve to chunks.

Events (the server's SSE vocabulary): `tool_call`, `tool_result`, `token`, `citation`, `done`. `token` events
stream every turn's text as it is generated; text of a turn that ends in tool calls is the model thinking
aloud, and `done.answer` is the final turn's text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mini import tracing
from mini._checks import at_least
from mini.agent.tools import FunctionTool, function_tool
from mini.errors import (
    BudgetExceededError,
    InvalidInputError,
    StructuredOutputError,
    error_payload,
    log_failure,
)
from mini.llms.base import Message, ToolCall, Usage, assistant_message, tool_result
from mini.query.citations import build_citations
from mini.query.prompts import format_context
from mini.types import RAGResponse, RetrievalResult, StreamEvent

if TYPE_CHECKING:
    from pydantic import BaseModel

    from mini.llms.base import LLM

log = logging.getLogger("mini.query")

AGENT_SYSTEM = (
    "You answer questions about the user's documents. Use the search_documents tool to find passages; when a "
    "question has several parts, search for them in the same turn (the searches run in parallel). Passages are "
    "numbered like [3]. Cite every claim with the number of the passage that supports it, e.g. [3]. Use other "
    "tools when they help. If the documents do not contain the answer, say so plainly."
)
REPAIR_PROMPT = (
    "Your answer could not be parsed: {error}\nReply with only a JSON object that matches this JSON Schema, "
    "keeping the [n] citations inside its text fields:\n{schema}"
)
_PREVIEW_CHARS = 500

# The agent's document search: (query, top_k) -> the best chunks, best first.
SearchFunction = Callable[[str, int], Awaitable[list[RetrievalResult]]]
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


@dataclass
class AgentConfig:
    """Limits of one agent run."""

    max_turns: int = 4
    max_tool_concurrency: int = 4
    tool_timeout_s: float = 60.0
    max_tokens: int | None = None  # prompt + completion tokens over the whole run
    time_budget_s: float | None = 120.0
    search_top_k: int = 5  # default passages per search_documents call

    def __post_init__(self) -> None:
        at_least(1, max_turns=self.max_turns, max_tool_concurrency=self.max_tool_concurrency)


def _jsonable(message: Message) -> dict[str, Any]:
    out = dict(message)
    if "tool_calls" in out:
        out["tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": dict(c.arguments)} if isinstance(c, ToolCall) else c
            for c in out["tool_calls"]
        ]
    return out


class AgentRun:
    """One agent run: `events()` streams its turns; once they are consumed, `response()` is its answer."""

    def __init__(
        self,
        search: SearchFunction,
        llm: LLM,
        question: str,
        tools: Sequence[Callable[..., Any] | FunctionTool],
        config: AgentConfig,
        output_model: type[BaseModel] | None,
        *,
        tracing_enabled: bool = True,
    ) -> None:
        self.search_function = search
        self.llm = llm
        self.question = question
        self.config = config
        self.output_model = output_model
        self.tracing_enabled = tracing_enabled
        self.started = time.perf_counter()
        self.messages: list[Message] = [
            {"role": "system", "content": AGENT_SYSTEM},
            {"role": "user", "content": question},
        ]
        self.chunks: list[RetrievalResult] = []
        self.numbers: dict[str, int] = {}
        self.searches: list[str] = []
        self.trace: list[dict[str, Any]] = []
        self.usage = Usage()
        self.turns = 0
        self.last_text = ""
        self.answer = ""
        self.output: dict[str, Any] | None = None
        search_tool = function_tool(
            self.search_documents,
            name="search_documents",
            description="Search the user's documents; returns numbered passages to cite as [n].",
        )
        self.tools: dict[str, FunctionTool] = {search_tool.name: search_tool}
        for item in tools:
            tool = function_tool(item)
            if tool.name in self.tools:
                raise InvalidInputError(f"two tools are named {tool.name!r}")
            self.tools[tool.name] = tool

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000.0, 3)

    async def search_documents(self, query: str, top_k: int | None = None) -> str:
        """Search the documents for `query`; at most `top_k` passages (default 5, at most 20)."""
        k = max(1, min(int(top_k or self.config.search_top_k), 20))
        self.searches.append(query)
        hits = await self.search_function(query, k)
        lines = []
        for hit in hits:
            number = self.numbers.get(hit.id)
            if number is None:
                self.chunks.append(hit)
                number = self.numbers[hit.id] = len(self.chunks)
            lines.append(f"[{number}] (source: {hit.source})\n{hit.text}")
        return "\n\n".join(lines) or "No passages matched."

    def budget_error(self, kind: str, message: str) -> BudgetExceededError:
        return BudgetExceededError(
            kind,
            message,
            transcript=[_jsonable(m) for m in self.messages],
            trace=list(self.trace),
            partial_answer=self.last_text,
        )

    async def events(self) -> AsyncIterator[StreamEvent]:
        budget = self.config.time_budget_s
        # Spans stay detached across yields (each step may run in another task); see mini.tracing.
        attributes = {"mini.question_chars": len(self.question), "mini.max_turns": self.config.max_turns}
        enabled = self.tracing_enabled
        with tracing.detached_span("mini.agent", attributes, enabled=enabled) as span:
            try:
                async with asyncio.timeout(budget) if budget else contextlib.nullcontext():
                    async for event in self._turns(span):
                        yield event
            except TimeoutError:
                message = f"the agent ran out of its {budget:g} s time budget"
                raise self.budget_error("time", message) from None
            finally:
                span.set_attribute("mini.turns", self.turns)

    async def _turns(self, parent: tracing.Span) -> AsyncIterator[StreamEvent]:
        specs = [tool.spec for tool in self.tools.values()]
        for turn in range(1, self.config.max_turns + 1):
            self.turns = turn
            with tracing.detached_span("mini.agent.turn", {"mini.turn": turn}, parent=parent) as span:
                parts: list[str] = []
                calls: tuple[ToolCall, ...] = ()
                before = self.usage
                stream = self.llm.stream(self.messages, tools=specs)
                try:
                    async for delta in stream:
                        if delta.usage is not None:
                            self.usage = self.usage + delta.usage
                        if delta.text:
                            parts.append(delta.text)
                            yield StreamEvent("token", delta.text)
                        if delta.tool_calls:
                            calls = delta.tool_calls
                finally:
                    await stream.aclose()  # type: ignore[attr-defined]
                used = Usage(
                    self.usage.prompt_tokens - before.prompt_tokens,
                    self.usage.completion_tokens - before.completion_tokens,
                )
                tracing.set_model_call(span, self.llm.name, used)
                span.set_attribute("mini.tool_calls", len(calls))
                self.last_text = "".join(parts)
                limit = self.config.max_tokens
                if limit is not None and self.usage.total_tokens > limit:
                    raise self.budget_error(
                        "tokens", f"the agent used {self.usage.total_tokens} tokens (budget {limit})"
                    )
                if not calls:
                    async for event in self._finish(self.last_text):
                        yield event
                    return
                self.messages.append(assistant_message(self.last_text, calls))
                for call in calls:
                    yield StreamEvent(
                        "tool_call", {"id": call.id, "name": call.name, "arguments": dict(call.arguments)}
                    )
                with tracing.use_span(span):  # the tools' spans (and tasks) are this turn's children
                    results = await self._run_tools(turn, calls)
                for call, (output, record) in zip(calls, results, strict=True):
                    self.messages.append(tool_result(call, output))
                    yield StreamEvent("tool_result", record)
        raise self.budget_error(
            "turns",
            f"the agent did not answer within max_turns={self.config.max_turns} (it kept calling tools)",
        )

    async def _run_tools(self, turn: int, calls: Sequence[ToolCall]) -> list[tuple[str, dict[str, Any]]]:
        slots = asyncio.Semaphore(self.config.max_tool_concurrency)

        async def run(call: ToolCall) -> tuple[str, dict[str, Any]]:
            record: dict[str, Any] = {
                "turn": turn,
                "id": call.id,
                "name": call.name,
                "arguments": dict(call.arguments),
            }
            async with slots:
                record["started_ms"] = self.elapsed_ms()
                with tracing.span("mini.tool", {"mini.tool": call.name, "mini.turn": turn}) as span:
                    try:
                        tool = self.tools.get(call.name)
                        if tool is None:
                            raise InvalidInputError(
                                f"there is no tool named {call.name!r}; use one of {sorted(self.tools)}"
                            )
                        async with asyncio.timeout(self.config.tool_timeout_s):
                            output = await tool.call(call.arguments)
                        record["ok"] = True
                    except TimeoutError as exc:
                        output = f"Error: the tool took longer than {self.config.tool_timeout_s:g} s and was stopped"
                        record["ok"] = False
                        tracing.record_error(span, exc)
                    except Exception as exc:  # the model sees the error and may try something else
                        output = f"Error: {type(exc).__name__}: {exc}"
                        record["ok"] = False
                        tracing.record_error(span, exc)
                    span.set_attribute("mini.tool.ok", record["ok"])
                record["ended_ms"] = self.elapsed_ms()
            record["output"] = output[:_PREVIEW_CHARS]
            self.trace.append(record)
            return output, record

        return list(await asyncio.gather(*(run(call) for call in calls)))

    async def _finish(self, answer: str) -> AsyncIterator[StreamEvent]:
        output: dict[str, Any] | None = None
        if self.output_model is not None:
            output = await self._structured(answer)
        citations = build_citations(answer, self.chunks)
        for citation in citations:
            yield StreamEvent("citation", asdict(citation))
        self.answer, self.output = answer, output
        yield StreamEvent("done", self.done_data(answer, citations, output))

    async def _structured(self, answer: str) -> dict[str, Any]:
        """The answer parsed into `output_model`; one repair round trip if it does not parse."""
        assert self.output_model is not None
        try:
            return _parse(self.output_model, answer)
        except ValueError as first:
            schema = json.dumps(self.output_model.model_json_schema())
            repair = [
                *self.messages,
                {"role": "assistant", "content": answer},
                {"role": "user", "content": REPAIR_PROMPT.format(error=str(first)[:500], schema=schema)},
            ]
            # Where the model has JSON-schema structured outputs (OpenAI-compatible), the repair asks for them:
            # the provider then guarantees the shape. Elsewhere the prompt's schema has to do.
            if getattr(self.llm, "supports_response_format", False):
                completion = await self.llm.complete(repair, response_format=self.output_model)
            else:
                completion = await self.llm.complete(repair)
            self.usage = self.usage + completion.usage
            try:
                return _parse(self.output_model, completion.text)
            except ValueError as second:
                raise StructuredOutputError(
                    f"the answer did not parse into {self.output_model.__name__} after one repair: {second}"
                ) from second

    def done_data(
        self, answer: str, citations: Sequence[Any], output: dict[str, Any] | None
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "answer": answer,
            "citations": [asdict(c) for c in citations],
            "metadata": self.metadata(),
        }
        if output is not None:
            data["output"] = output
        return data

    def metadata(self) -> dict[str, Any]:
        tool_ms = sum(r["ended_ms"] - r["started_ms"] for r in self.trace)
        return {
            "answer_type": "agent",
            "llm": self.llm.name,
            "agent": {"turns": self.turns, "tool_calls": list(self.trace), "searches": list(self.searches)},
            "timings_ms": {"tools": round(tool_ms, 3), "total": self.elapsed_ms()},
            "usage": self.usage.as_dict(),
        }

    async def result(self) -> RAGResponse:
        """Run the loop to its answer; `BudgetExceededError`/`StructuredOutputError`/provider errors raise."""
        events = self.events()
        try:
            async for _ in events:
                pass
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        return self.response()

    def response(self) -> RAGResponse:
        metadata = self.metadata()
        if self.output is not None:
            metadata["output"] = self.output
        return RAGResponse(
            answer=self.answer,
            original_query=self.question,
            rewritten_queries=list(self.searches),
            retrieved_chunks=list(self.chunks),
            context_used=format_context(self.chunks),
            metadata=metadata,
            citations=build_citations(self.answer, self.chunks),
        )


def _parse(model: type[BaseModel], text: str) -> dict[str, Any]:
    match = _JSON_OBJECT.search(text)  # models like to wrap JSON in prose or code fences
    if match is None:
        raise ValueError("no JSON object in the answer")
    parsed: dict[str, Any] = model.model_validate_json(match.group(0)).model_dump(mode="json")
    return parsed


__all__ = ["AGENT_SYSTEM", "AgentConfig", "AgentRun", "SearchFunction"]


async def errors_as_events(events: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
    """A run's events, a failure (a budget, a provider error) ending them as an `error` event with the
    transcript so far, instead of an exception in the middle of a stream."""
    try:
        async for event in events:
            yield event
    except Exception as exc:
        log_failure(log, "agent stream failed", exc)
        data = error_payload(exc)
        transcript = getattr(exc, "transcript", None)
        if transcript is not None:
            data["transcript"] = transcript
        yield StreamEvent("error", data)
    finally:
        await events.aclose()  # type: ignore[attr-defined]
