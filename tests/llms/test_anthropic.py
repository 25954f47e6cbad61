"""What is particular to the Anthropic adapter: message translation, the request body, credentials, the event
stream (tool input fragments, in-stream errors, truncated streams) and the auth hint. The shared behaviour is
in test_contract.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mini._sse import SSEEvent, decode, encode
from mini.config import LLMConfig
from mini.errors import (
    AuthenticationError,
    ConfigurationError,
    ProviderConnectionError,
    ProviderError,
    ProviderServerError,
    RateLimitError,
)
from mini.llms.anthropic import AnthropicChat, stream_error, wire_messages
from mini.llms.base import Delta, Tool, ToolCall, Usage, assistant_message, create_llm, tool_result
from mini.testing.sim import SimServer

KEY = "test-key"
WEATHER = Tool("get_weather", "Current weather for a city.", {"type": "object", "properties": {}})
OSLO = ToolCall("toolu_1", "get_weather", {"city": "Oslo"})
BERGEN = ToolCall("toolu_2", "get_weather", {"city": "Bergen"})
OSLO_BLOCK = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}


def _llm(**config: Any) -> AnthropicChat:
    config.setdefault("api_key", KEY)
    config.setdefault("base_url", "http://127.0.0.1:9")  # never contacted by these tests
    return AnthropicChat(LLMConfig(model=config.pop("model", "anthropic:claude-test"), **config))


def test_system_messages_become_the_top_level_system_prompt() -> None:
    system, wire = wire_messages(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "system", "content": "Cite sources."},
        ]
    )
    assert system == "Be brief.\n\nCite sources."
    assert wire == [{"role": "user", "content": "Hi"}]
    assert wire_messages([{"role": "user", "content": "Hi"}])[0] is None


def test_tool_calls_become_tool_use_blocks_and_results_one_user_turn() -> None:
    messages = [
        {"role": "user", "content": "Weather in Oslo and Bergen?"},
        assistant_message("Checking both.", [OSLO, BERGEN]),
        tool_result(OSLO, "3 degrees"),
        tool_result(BERGEN, "9 degrees"),
        {"role": "user", "content": "Which is warmer?"},
    ]
    _system, wire = wire_messages(messages)
    assert wire == [
        {"role": "user", "content": "Weather in Oslo and Bergen?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Bergen"}},
            ],
        },
        {
            # Every result answering the turn above in the one user message after it, results first.
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "3 degrees"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "9 degrees"},
                {"type": "text", "text": "Which is warmer?"},
            ],
        },
    ]


def test_empty_text_is_not_sent_as_an_empty_block() -> None:
    _system, wire = wire_messages(
        [
            {"role": "user", "content": "Weather?"},
            assistant_message("", [OSLO]),
            tool_result(OSLO, ""),
            {"role": "assistant", "content": ""},  # says nothing: dropped, the API would reject it
        ]
    )
    assert wire == [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [OSLO_BLOCK]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]},
    ]


def test_the_body_has_max_tokens_tools_and_extra_params_last() -> None:
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]
    body = _llm()._payload(messages, None, None, [WEATHER])
    assert body == {
        "model": "claude-test",
        "max_tokens": 1024,  # required by the API; our default when nobody said
        "messages": [{"role": "user", "content": "Q"}],
        "temperature": 0.0,
        "system": "S",
        "tools": [
            {
                "name": "get_weather",
                "description": WEATHER.description,
                "input_schema": {**WEATHER.parameters},
            }
        ],
    }
    configured = _llm(max_tokens=300, temperature=0.5, extra_params={"top_k": 5, "temperature": 0.9})
    body = configured._payload(messages, None, None, None)
    assert body["max_tokens"] == 300 and body["top_k"] == 5 and body["temperature"] == 0.9
    assert "tools" not in body
    assert configured._payload(messages, 0.1, 50, None)["max_tokens"] == 50


def test_no_key_and_no_base_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        AnthropicChat(LLMConfig(model="anthropic:claude-test"))


def test_credentials_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key")
    llm = create_llm(LLMConfig(model="anthropic:claude-test"))
    assert isinstance(llm, AnthropicChat) and llm.name == "anthropic:claude-test"
    assert llm._http.base_url == "https://api.anthropic.com"
    assert llm._http._headers == {"anthropic-version": "2023-06-01", "x-api-key": "env-key"}
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://proxy.local/v1/")  # the OpenAI habit of adding /v1
    assert AnthropicChat(LLMConfig(model="anthropic:c"))._http.base_url == "http://proxy.local"


class _Events:
    """A stand-in for an open SSE stream: (event name, JSON data) pairs, framed and decoded by the codec."""

    def __init__(self, events: list[tuple[str, str]]) -> None:
        self.events = events
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[SSEEvent]:
        for event in decode(encode(data, event=name) for name, data in self.events):
            yield event

    async def aclose(self) -> None:
        self.closed = True


def _event(kind: str, **data: Any) -> tuple[str, str]:
    return kind, json.dumps({"type": kind, **data})


START = _event(
    "message_start", message={"id": "msg_1", "content": [], "usage": {"input_tokens": 7, "output_tokens": 1}}
)
STOP = _event("message_stop")


def _text(index: int, text: str) -> tuple[str, str]:
    return _event("content_block_delta", index=index, delta={"type": "text_delta", "text": text})


def _json(index: int, fragment: str) -> tuple[str, str]:
    return _event(
        "content_block_delta", index=index, delta={"type": "input_json_delta", "partial_json": fragment}
    )


async def _stream(llm: AnthropicChat, events: list[tuple[str, str]]) -> list[Delta]:
    stream = _Events(events)

    async def open_sse(path: str, payload: Any) -> _Events:
        assert path == "/v1/messages" and payload["stream"] is True
        return stream

    llm._http.open_sse = open_sse  # type: ignore[method-assign,assignment]
    try:
        return [delta async for delta in llm.stream([{"role": "user", "content": "Q"}])]
    finally:
        assert stream.closed


async def test_stream_assembles_tool_input_fragments_and_reports_usage() -> None:
    llm = _llm()
    tool = {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {}}
    deltas = await _stream(
        llm,
        [
            START,
            _event("ping"),
            _event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
            _text(0, "Let me"),
            _text(0, " check."),
            _event("content_block_stop", index=0),
            _event("content_block_start", index=1, content_block=tool),
            _json(1, ""),
            _json(1, '{"city": '),
            _json(1, '"Oslo"}'),
            _event("content_block_stop", index=1),
            _event("message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 11}),
            STOP,
        ],
    )
    assert [d.text for d in deltas[:-1]] == ["Let me", " check."]
    assert all(not d.tool_calls and d.usage is None for d in deltas[:-1])
    last = deltas[-1]
    assert last.finish_reason == "tool_calls" and last.usage == Usage(7, 11)
    assert last.tool_calls == (ToolCall("toolu_9", "get_weather", {"city": "Oslo"}),)
    assert llm.usage == Usage(7, 11)


async def test_stream_without_message_stop_is_a_connection_error() -> None:
    llm = _llm()
    with pytest.raises(ProviderConnectionError) as caught:
        await _stream(llm, [START, _text(0, "Half an ans")])
    assert caught.value.model == "claude-test"
    assert llm.usage == Usage()


@pytest.mark.parametrize(
    ("kind", "error_class", "status"),
    [
        ("overloaded_error", ProviderServerError, 529),
        ("api_error", ProviderServerError, 500),
        ("rate_limit_error", RateLimitError, 429),
        ("invalid_request_error", ProviderError, None),
    ],
)
async def test_in_stream_errors_are_typed(
    kind: str, error_class: type[ProviderError], status: int | None
) -> None:
    error = {"type": kind, "message": "Overloaded"}
    with pytest.raises(error_class, match="Overloaded") as caught:
        await _stream(_llm(), [START, _text(0, "Hi"), _event("error", error=error, request_id="req_7")])
    assert type(caught.value) is error_class
    assert getattr(caught.value, "status_code", None) == status
    assert caught.value.model == "claude-test" and caught.value.request_id == "req_7"


def test_an_error_event_without_details_is_still_an_error() -> None:
    assert "stream failed" in str(stream_error({"type": "error"}))


async def test_auth_failures_name_the_environment_variable(sim: SimServer) -> None:
    sim.configure(api_key=KEY)
    llm = _llm(base_url=sim.url, api_key="wrong", max_retries=3)
    with pytest.raises(AuthenticationError, match="ANTHROPIC_API_KEY") as caught:
        await llm.complete([{"role": "user", "content": "hi"}])
    assert caught.value.hint and "ANTHROPIC_API_KEY" in caught.value.hint
    assert "OPENAI_API_KEY" not in caught.value.hint
    assert caught.value.request_id and caught.value.model == "claude-test"
    await llm.aclose()


async def test_max_tokens_maps_to_length_over_the_wire(sim: SimServer) -> None:
    llm = _llm(base_url=sim.url + "/v1", max_tokens=2)  # a base URL with /v1 works too
    question = [{"role": "user", "content": "When is glass collected?"}]
    completion = await llm.complete(question)
    assert completion.text == "Simulated answer:" and completion.finish_reason == "length"
    assert completion.usage.completion_tokens == 2
    deltas = [d async for d in llm.stream(question)]
    assert "".join(d.text for d in deltas) == "Simulated answer:" and deltas[-1].finish_reason == "length"
    await llm.aclose()


async def test_parallel_tool_calls_round_trip_without_bad_requests(sim: SimServer) -> None:
    llm = _llm(base_url=sim.url)
    calls = [{"name": "get_weather", "arguments": {"city": city}} for city in ("Oslo", "Bergen")]
    sim.script([{"content": "Checking.", "tool_calls": calls}, {"content": "Bergen is warmer."}])
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Which is warmer, Oslo or Bergen?"}]
    first = await llm.complete(messages, tools=[WEATHER])
    assert first.text == "Checking." and [dict(c.arguments) for c in first.tool_calls] == [
        {"city": "Oslo"},
        {"city": "Bergen"},
    ]
    messages.append(assistant_message(first.text, first.tool_calls))
    messages += [tool_result(call, f"{i} degrees") for i, call in enumerate(first.tool_calls)]
    second = await llm.complete(messages, tools=[WEATHER])
    assert second.text == "Bergen is warmer." and second.finish_reason == "stop"
    assert sim.stats()["messages"]["bad_requests"] == 0
    await llm.aclose()
