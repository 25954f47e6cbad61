"""The simulator's Anthropic Messages wire format, checked by the official anthropic SDK over real HTTP.

If the SDK parses our messages, assembles our streams and maps our errors to its own exception classes, the
simulator speaks the real wire format, and the adapter tested against it speaks it too.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import pytest
from anthropic import AsyncAnthropic

from mini.query.prompts import REWRITE_SYSTEM, answer_messages
from mini.testing.sim import SimServer, answer_for

MODEL = "claude-sim"
SOURCES = "[1] Glass is collected on Wednesdays. More text.\n\n[2] Paper goes out on Mondays."
EXPECTED = "Glass is collected on Wednesdays. [1] Paper goes out on Mondays. [2]"
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ARGUMENTS = {"city": "Oslo", "units": "metric", "days": 3}


def _split(messages: list[dict[str, str]]) -> tuple[str, list[dict[str, str]]]:
    """Canonical messages -> the Messages API's top-level system prompt and user/assistant turns."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    return system, [m for m in messages if m["role"] != "system"]


SYSTEM, QUESTION = _split(answer_messages("When is glass collected?", SOURCES))


@pytest.fixture
async def client(sim: SimServer) -> AsyncIterator[AsyncAnthropic]:
    sdk = AsyncAnthropic(base_url=sim.url, api_key="test", max_retries=0)
    yield sdk
    await sdk.close()


async def _post(sim: SimServer, body: dict[str, Any], **headers: str) -> httpx.Response:
    """A raw request, for what the SDK would refuse to send."""
    base = {"x-api-key": "test", "anthropic-version": "2023-06-01"}
    async with httpx.AsyncClient(base_url=sim.url) as http:
        return await http.post("/v1/messages", json=body, headers={**base, **headers})


async def test_create_returns_a_message_with_text_usage_and_request_id(
    client: AsyncAnthropic, sim: SimServer
) -> None:
    message = await client.messages.create(model=MODEL, max_tokens=256, system=SYSTEM, messages=QUESTION)
    assert isinstance(message, anthropic.types.Message)
    assert message.type == "message" and message.role == "assistant" and message.model == MODEL
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].type == "text" and message.content[0].text == EXPECTED
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == 12
    assert message.id.startswith("msg_") and (message._request_id or "").startswith("req_")
    stats = sim.stats()["messages"]
    assert stats["responses_ok"] == 1 and stats["completion_tokens"] == 12


async def test_the_system_prompt_stays_a_system_prompt(client: AsyncAnthropic) -> None:
    # Rewrite requests are recognised by their system prompt, so it must reach the answer rules as one.
    system = REWRITE_SYSTEM.format(n=2)
    question = [{"role": "user", "content": "glass collection"}]
    message = await client.messages.create(model=MODEL, max_tokens=256, system=system, messages=question)
    as_blocks = await client.messages.create(
        model=MODEL, max_tokens=256, system=[{"type": "text", "text": system}], messages=question
    )
    in_messages = await client.messages.create(  # newer API versions accept system turns in `messages`
        model=MODEL, max_tokens=256, messages=[{"role": "system", "content": system}, *question]
    )
    expected = answer_for([{"role": "system", "content": system}, *question])
    assert expected == "glass collection (variant 1)\nglass collection (variant 2)"
    for reply in (message, as_blocks, in_messages):
        assert reply.content[0].type == "text" and reply.content[0].text == expected


async def test_stream_helper_assembles_the_same_message(client: AsyncAnthropic, sim: SimServer) -> None:
    whole = await client.messages.create(model=MODEL, max_tokens=256, system=SYSTEM, messages=QUESTION)
    async with client.messages.stream(
        model=MODEL, max_tokens=256, system=SYSTEM, messages=QUESTION
    ) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert len(pieces) == 12 and "".join(pieces) == EXPECTED
    assert [(b.type, getattr(b, "text", None)) for b in final.content] == [("text", EXPECTED)]
    assert whole.content[0].type == "text" and whole.content[0].text == EXPECTED
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == whole.usage.input_tokens and final.usage.output_tokens == 12
    assert sim.stats()["messages"]["stream_requests"] == 1


async def test_raw_stream_follows_the_event_sequence(client: AsyncAnthropic) -> None:
    stream = await client.messages.create(
        model=MODEL, max_tokens=256, system=SYSTEM, messages=QUESTION, stream=True
    )
    events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 12,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # the SDK drops the ping
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and start.message.usage.input_tokens > 0
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "end_turn" and delta.usage.output_tokens == 12


async def test_tool_use_is_parsed_and_the_tool_result_round_trip_accepted(
    client: AsyncAnthropic, sim: SimServer
) -> None:
    sim.script([{"tool_calls": [{"name": "get_weather", "arguments": ARGUMENTS}]}, {"content": "3 degrees."}])
    question = [{"role": "user", "content": "Weather in Oslo?"}]
    first = await client.messages.create(model=MODEL, max_tokens=256, messages=question, tools=[WEATHER])
    assert first.stop_reason == "tool_use"
    assert [block.type for block in first.content] == ["tool_use"]
    call = first.content[0]
    assert call.type == "tool_use" and call.name == "get_weather" and call.input == ARGUMENTS
    assert call.id.startswith("toolu_")
    follow_up: list[Any] = [
        *question,
        {"role": "assistant", "content": [call.model_dump()]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "3 degrees"}],
        },
    ]
    second = await client.messages.create(model=MODEL, max_tokens=256, messages=follow_up, tools=[WEATHER])
    assert second.content[0].type == "text" and second.content[0].text == "3 degrees."
    assert second.stop_reason == "end_turn"


async def test_streamed_tool_input_arrives_in_fragments_the_sdk_assembles(
    client: AsyncAnthropic, sim: SimServer
) -> None:
    sim.script(
        [{"content": "Let me check.", "tool_calls": [{"name": "get_weather", "arguments": ARGUMENTS}]}]
    )
    fragments: list[str] = []
    question = [{"role": "user", "content": "Weather in Oslo?"}]
    async with client.messages.stream(
        model=MODEL, max_tokens=256, messages=question, tools=[WEATHER]
    ) as stream:
        async for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                fragments.append(event.delta.partial_json)
        final = await stream.get_final_message()
    assert len([f for f in fragments if f]) >= 2 and json.loads("".join(fragments)) == ARGUMENTS
    assert [block.type for block in final.content] == ["text", "tool_use"]
    assert final.content[0].type == "text" and final.content[0].text == "Let me check."
    tool = final.content[1]
    assert tool.type == "tool_use" and tool.name == "get_weather" and tool.input == ARGUMENTS
    assert final.stop_reason == "tool_use"


async def test_max_tokens_cuts_the_answer_like_the_api(client: AsyncAnthropic) -> None:
    message = await client.messages.create(model=MODEL, max_tokens=3, system=SYSTEM, messages=QUESTION)
    assert message.content[0].type == "text" and message.content[0].text == "Glass is collected"
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 3
    async with client.messages.stream(model=MODEL, max_tokens=3, system=SYSTEM, messages=QUESTION) as stream:
        final = await stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == "Glass is collected"
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 3


async def test_wrong_key_is_an_authentication_error(sim: SimServer) -> None:
    sim.configure(api_key="secret")
    wrong = AsyncAnthropic(base_url=sim.url, api_key="test", max_retries=0)
    right = AsyncAnthropic(base_url=sim.url, api_key="secret", max_retries=0)
    try:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await wrong.messages.create(model=MODEL, max_tokens=16, messages=QUESTION)
        assert (await right.messages.create(model=MODEL, max_tokens=16, messages=QUESTION)).content
    finally:
        await wrong.close()
        await right.close()
    error = caught.value
    assert error.status_code == 401 and error.request_id and error.request_id.startswith("req_sim_")
    assert isinstance(error.body, dict) and error.body["type"] == "error"
    assert error.body["error"]["type"] == "authentication_error"
    # The documented header (what mini's adapter sends); the SDK sends the key as a Bearer token.
    body = {"model": MODEL, "max_tokens": 16, "messages": QUESTION}
    assert (await _post(sim, body, **{"x-api-key": "secret"})).status_code == 200
    assert (await _post(sim, body, **{"x-api-key": "wrong"})).status_code == 401
    assert sim.stats()["messages"]["unauthorized"] == 2


async def test_rate_limits_are_rate_limit_errors_with_retry_after(
    client: AsyncAnthropic, sim: SimServer
) -> None:
    sim.configure(rate_limit_fraction=1.0, retry_after=0.25)
    with pytest.raises(anthropic.RateLimitError) as caught:
        await client.messages.create(model=MODEL, max_tokens=16, messages=QUESTION)
    error = caught.value
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "1"
    assert error.response.headers["retry-after-ms"] == "250"
    assert isinstance(error.body, dict) and error.body["error"]["type"] == "rate_limit_error"
    assert sim.stats()["messages"]["rate_limited"] == 1


async def test_sdk_retries_are_counted_from_its_retry_header(sim: SimServer) -> None:
    sim.configure(rate_limit_fraction=1.0, retry_after=0.01)
    sdk = AsyncAnthropic(base_url=sim.url, api_key="test", max_retries=2)
    try:
        with pytest.raises(anthropic.RateLimitError):
            await sdk.messages.create(model=MODEL, max_tokens=16, messages=QUESTION)
    finally:
        await sdk.close()
    stats = sim.stats()["messages"]
    assert stats["requests"] == 3 and stats["retried"] == 2


async def test_server_errors_are_internal_server_errors(client: AsyncAnthropic, sim: SimServer) -> None:
    sim.configure(error_fraction=1.0)
    with pytest.raises(anthropic.InternalServerError) as caught:
        await client.messages.create(model=MODEL, max_tokens=16, messages=QUESTION)
    assert caught.value.status_code == 500
    assert isinstance(caught.value.body, dict) and caught.value.body["error"]["type"] == "api_error"
    with pytest.raises(anthropic.InternalServerError):
        async with client.messages.stream(model=MODEL, max_tokens=16, messages=QUESTION) as stream:
            await stream.get_final_message()
    assert sim.stats()["messages"]["errors"] == 2


async def test_unknown_model_is_not_found(client: AsyncAnthropic, sim: SimServer) -> None:
    with pytest.raises(anthropic.NotFoundError, match="missing-model") as caught:
        await client.messages.create(model="missing-model", max_tokens=16, messages=QUESTION)
    assert isinstance(caught.value.body, dict) and caught.value.body["error"]["type"] == "not_found_error"
    assert caught.value.request_id
    assert sim.stats()["messages"]["bad_requests"] == 1


async def test_unanswered_tool_use_is_a_bad_request(client: AsyncAnthropic) -> None:
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}
    messages: list[Any] = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [tool_use]},
        {"role": "user", "content": "Well?"},
    ]
    with pytest.raises(anthropic.BadRequestError, match="toolu_1"):
        await client.messages.create(model=MODEL, max_tokens=16, messages=messages, tools=[WEATHER])
    stray = [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "x"}]}]
    with pytest.raises(anthropic.BadRequestError, match="toolu_9"):
        await client.messages.create(model=MODEL, max_tokens=16, messages=stray)
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "3 degrees"}
    messages[-1] = {"role": "user", "content": [{"type": "text", "text": "Here:"}, result]}
    with pytest.raises(anthropic.BadRequestError, match="must come first"):
        await client.messages.create(model=MODEL, max_tokens=16, messages=messages, tools=[WEATHER])
    messages[-1] = {"role": "user", "content": [result, {"type": "text", "text": "Warm?"}]}
    assert (
        await client.messages.create(model=MODEL, max_tokens=16, messages=messages, tools=[WEATHER])
    ).content


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        ({"model": MODEL, "messages": QUESTION}, {}, "max_tokens"),
        (
            {"model": MODEL, "max_tokens": 16, "messages": QUESTION},
            {"anthropic-version": ""},
            "anthropic-version",
        ),
        ({"model": MODEL, "max_tokens": 16, "messages": [{"role": "tool", "content": "x"}]}, {}, "role"),
        (
            {"model": MODEL, "max_tokens": 16, "messages": QUESTION, "tools": [{"name": "f"}]},
            {},
            "input_schema",
        ),
    ],
)
async def test_requests_the_api_rejects_get_anthropic_style_400s(
    sim: SimServer, body: dict[str, Any], headers: dict[str, str], message: str
) -> None:
    response = await _post(sim, body, **headers)
    assert response.status_code == 400 and response.headers["request-id"]
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert message in error["error"]["message"]


async def test_invalid_json_is_an_anthropic_style_400(sim: SimServer) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as http:
        response = await http.post(
            "/v1/messages",
            content=b"{not json",
            headers={"x-api-key": "k", "content-type": "application/json"},
        )
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
