"""In-process fakes of mini's protocols for tests: `ScriptedLLM`, a chat model that answers from a script."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Unpack

from mini.llms.base import ChatOptions, Completion, Delta, Message, Tool, Usage

Reply = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class Call:
    """One request the fake received: the last user message's text, and the options it was asked with."""

    prompt: str
    messages: tuple[Message, ...]
    temperature: float | None
    max_tokens: int | None
    tools: tuple[Tool, ...]


class ScriptedLLM:
    """An `LLM` whose reply to each request is `reply(prompt)` (the last user message's text), or the next
    string of a list. Records every call (`calls`) and its concurrency (`in_flight`, `peak_in_flight`);
    `delay` seconds per request make concurrency observable; each call adds `usage` to the running total."""

    def __init__(
        self,
        reply: Reply | Sequence[str],
        *,
        delay: float = 0.0,
        usage: Usage | None = None,
        name: str = "fake:scripted",
    ) -> None:
        self.name = name
        self._reply = reply
        self._replies = [] if callable(reply) else list(reply)
        self.delay = delay
        self.call_usage = usage or Usage()
        self.usage = Usage()
        self.calls: list[Call] = []
        self.in_flight = 0
        self.peak_in_flight = 0

    @contextlib.contextmanager
    def _request(self, messages: Sequence[Message], options: ChatOptions) -> Iterator[str]:
        """Record the call and yield its reply; count it in flight until the block exits, and add its usage
        once the block completes (a failed or closed request spent nothing)."""
        prompt = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
        call = Call(
            prompt,
            tuple(messages),
            options.get("temperature"),
            options.get("max_tokens"),
            tuple(options.get("tools") or ()),
        )
        self.calls.append(call)
        if callable(self._reply):
            text = self._reply(prompt)
        elif self._replies:
            text = self._replies.pop(0)
        else:
            raise AssertionError(
                f"ScriptedLLM ran out of replies at call {len(self.calls)}: {prompt[:200]!r}"
            )
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            yield text
        finally:
            self.in_flight -= 1
        self.usage = self.usage + self.call_usage

    async def complete(self, messages: Sequence[Message], **options: Unpack[ChatOptions]) -> Completion:
        with self._request(messages, options) as text:
            if self.delay:
                await asyncio.sleep(self.delay)
        return Completion(text, "fake", self.call_usage, finish_reason="stop")

    async def stream(
        self, messages: Sequence[Message], **options: Unpack[ChatOptions]
    ) -> AsyncIterator[Delta]:
        """The reply word by word (each piece keeps its leading whitespace); the last delta carries usage."""
        with self._request(messages, options) as text:
            for piece in re.findall(r"\s*\S+|\s+$", text):
                if self.delay:
                    await asyncio.sleep(self.delay)
                yield Delta(piece)
        yield Delta(usage=self.call_usage, finish_reason="stop")

    async def aclose(self) -> None:
        return None
