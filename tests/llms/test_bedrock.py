"""Bedrock adapter specifics: message translation, error mapping (pure), stream assembly, clients per loop.

The behaviour every provider shares (answers, streaming, tools, retries, timeouts) is in test_contract.py.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    EventStreamError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from mini._limits import is_retryable
from mini.config import LLMConfig
from mini.errors import (
    AuthenticationError,
    BadRequestError,
    ProviderConnectionError,
    ProviderError,
    ProviderServerError,
    ProviderStatusError,
    ProviderTimeoutError,
    RateLimitError,
)
from mini.llms.base import Tool, ToolCall, assistant_message, create_llm, tool_result
from mini.llms.bedrock import AUTH_HINT, BedrockChat, _EventStream, map_error, wire_messages, wire_tools
from mini.testing.sim import SimServer

MODEL = "bedrock:anthropic.claude-sim-v1:0"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials; no ~/.aws files and no instance metadata lookups."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASIM")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sim-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


# --- messages ---------------------------------------------------------------------------------------------


def test_messages_become_converse_turns_with_system_apart() -> None:
    call = ToolCall("t1", "get_weather", {"city": "Oslo"})
    other = ToolCall("t2", "get_time", {})
    system, turns = wire_messages(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather and time in Oslo?"},
            assistant_message("", [call, other]),
            tool_result(call, "3 degrees"),
            tool_result(other, "noon"),
            {"role": "user", "content": "Thanks. And tomorrow?"},
        ]
    )
    assert system == [{"text": "Be brief."}]
    assert turns == [
        {"role": "user", "content": [{"text": "Weather and time in Oslo?"}]},
        {
            "role": "assistant",
            "content": [  # the blank text is dropped: Converse rejects blank text blocks
                {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Oslo"}}},
                {"toolUse": {"toolUseId": "t2", "name": "get_time", "input": {}}},
            ],
        },
        {
            "role": "user",  # both results and the next question in one turn: roles must alternate
            "content": [
                {"toolResult": {"toolUseId": "t1", "content": [{"text": "3 degrees"}]}},
                {"toolResult": {"toolUseId": "t2", "content": [{"text": "noon"}]}},
                {"text": "Thanks. And tomorrow?"},
            ],
        },
    ]


def test_openai_shaped_tool_calls_and_content_parts_are_understood() -> None:
    openai_call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
    _, turns = wire_messages(
        [
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "calling", "tool_calls": [openai_call]},
        ]
    )
    assert turns[0] == {"role": "user", "content": [{"text": "ab"}]}
    assert turns[1]["content"] == [
        {"text": "calling"},
        {"toolUse": {"toolUseId": "c1", "name": "f", "input": {"x": 1}}},
    ]


def test_tools_and_request_options(aws_env: None) -> None:
    tool = Tool("get_weather", "Weather.", {"type": "object", "properties": {"city": {"type": "string"}}})
    assert wire_tools([tool]) == [
        {
            "toolSpec": {
                "name": "get_weather",
                "description": "Weather.",
                "inputSchema": {"json": dict(tool.parameters)},
            }
        }
    ]
    llm = BedrockChat(LLMConfig(model=MODEL, temperature=0.3, max_tokens=50, extra_params={"top_k": 5}))
    request = llm._payload([{"role": "user", "content": "hi"}], None, None, [tool])
    assert request["modelId"] == "anthropic.claude-sim-v1:0"
    assert request["inferenceConfig"] == {"temperature": 0.3, "maxTokens": 50}
    assert request["additionalModelRequestFields"] == {"top_k": 5}
    assert request["toolConfig"] == {"tools": wire_tools([tool])}
    assert "system" not in request
    bare = llm._payload([{"role": "user", "content": "hi"}], 0.0, 7, None)
    assert bare["inferenceConfig"] == {"temperature": 0.0, "maxTokens": 7} and "toolConfig" not in bare


# --- construction -----------------------------------------------------------------------------------------


def test_construction_does_no_io_and_resolves_the_region(
    monkeypatch: pytest.MonkeyPatch, aws_env: None
) -> None:
    llm = create_llm(LLMConfig(model=MODEL))
    assert isinstance(llm, BedrockChat)
    assert llm.name == MODEL and llm.region == "us-east-1" and llm.endpoint_url is None
    assert llm._clients._entries == {}  # no client until the first call, on the caller's loop
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert BedrockChat(LLMConfig(model=MODEL)).region == "eu-west-1"
    assert BedrockChat(LLMConfig(model=MODEL, region="ap-south-1")).region == "ap-south-1"


def test_limits_are_shared_per_endpoint_and_credential(
    monkeypatch: pytest.MonkeyPatch, aws_env: None
) -> None:
    first, second = BedrockChat(LLMConfig(model=MODEL)), BedrockChat(LLMConfig(model="bedrock:other-model"))
    assert first._limiter is second._limiter  # one account and region: one quota
    assert BedrockChat(LLMConfig(model=MODEL, region="eu-west-1"))._limiter is not first._limiter
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAOTHER")
    assert BedrockChat(LLMConfig(model=MODEL))._limiter is not first._limiter


# --- errors -----------------------------------------------------------------------------------------------


def _client_error(code: str, status: int | None, headers: dict[str, str] | None = None) -> ClientError:
    meta: dict[str, Any] = {"RequestId": "req-42", "HTTPHeaders": headers or {}}
    if status is not None:
        meta["HTTPStatusCode"] = status
    return ClientError(
        {"Error": {"Code": code, "Message": f"{code} happened"}, "ResponseMetadata": meta}, "Converse"
    )


@pytest.mark.parametrize(
    ("code", "status", "cls", "retryable"),
    [
        ("ThrottlingException", 429, RateLimitError, True),
        ("TooManyRequestsException", 429, RateLimitError, True),
        ("AccessDeniedException", 403, AuthenticationError, False),
        ("UnrecognizedClientException", 403, AuthenticationError, False),
        ("InvalidSignatureException", 403, AuthenticationError, False),
        ("ExpiredTokenException", 403, AuthenticationError, False),
        ("ValidationException", 400, BadRequestError, False),
        ("ResourceNotFoundException", 404, BadRequestError, False),
        ("ModelTimeoutException", 408, ProviderStatusError, True),
        ("InternalServerException", 500, ProviderServerError, True),
        ("ServiceUnavailableException", 503, ProviderServerError, True),
        ("ModelNotReadyException", 429, ProviderServerError, True),
        ("ModelErrorException", 424, ProviderServerError, True),
        ("SomethingNewException", 401, AuthenticationError, False),  # unknown codes: by status
        ("SomethingNewException", 502, ProviderServerError, True),
        ("SomethingNewException", 422, BadRequestError, False),
    ],
)
def test_client_errors_map_by_code_then_status(
    code: str, status: int, cls: type[ProviderStatusError], retryable: bool
) -> None:
    error = map_error(_client_error(code, status))
    assert type(error) is cls
    assert isinstance(error, ProviderStatusError) and error.status_code == status
    assert error.provider == "bedrock" and error.request_id == "req-42"
    assert code in str(error)
    assert is_retryable(error) is retryable
    if cls is AuthenticationError:
        assert error.hint == AUTH_HINT


def test_throttling_carries_retry_after_when_sent() -> None:
    error = map_error(_client_error("ThrottlingException", 429, {"retry-after": "2"}))
    assert isinstance(error, RateLimitError) and error.retry_after == 2.0
    without = map_error(_client_error("ThrottlingException", 429))
    assert isinstance(without, RateLimitError) and without.retry_after is None


@pytest.mark.parametrize(
    ("code", "cls", "status"),
    [
        ("throttlingException", RateLimitError, 429),
        ("modelStreamErrorException", ProviderServerError, 424),
        ("internalServerException", ProviderServerError, 500),
        ("validationException", BadRequestError, 400),
    ],
)
def test_errors_inside_the_event_stream_map_by_their_lower_camel_code(
    code: str, cls: type[ProviderStatusError], status: int
) -> None:
    # botocore raises exception events as EventStreamError, with no HTTP status of their own.
    exc = EventStreamError({"Error": {"Code": code, "Message": "mid-stream"}}, "ConverseStream")
    error = map_error(exc)
    assert type(error) is cls and isinstance(error, ProviderStatusError) and error.status_code == status


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (ReadTimeoutError(endpoint_url="http://x"), ProviderTimeoutError),
        (ConnectTimeoutError(endpoint_url="http://x"), ProviderTimeoutError),
        (TimeoutError(), ProviderTimeoutError),
        (EndpointConnectionError(endpoint_url="http://x"), ProviderConnectionError),
        (ResponseStreamingError(error="reset"), ProviderConnectionError),
        (aiohttp.ClientPayloadError("Response payload is not completed"), ProviderConnectionError),
        (aiohttp.ServerDisconnectedError(), ProviderConnectionError),
        (NoCredentialsError(), AuthenticationError),
        (ParamValidationError(report="bad"), BadRequestError),
        (RuntimeError("surprise"), ProviderError),
    ],
)
def test_transport_errors_map_to_typed_provider_errors(exc: Exception, cls: type[ProviderError]) -> None:
    error = map_error(exc)
    assert type(error) is cls and error.provider == "bedrock"
    assert is_retryable(error) is issubclass(cls, ProviderConnectionError)


def test_provider_errors_pass_through() -> None:
    error = RateLimitError("already typed", provider="bedrock")
    assert map_error(error) is error


# --- stream assembly --------------------------------------------------------------------------------------


async def _events(*events: dict[str, Any], fail: Exception | None = None) -> AsyncIterator[dict[str, Any]]:
    for event in events:
        yield event
    if fail is not None:
        raise fail


async def test_stream_assembles_tool_input_fragments_and_ends_with_one_closing_delta(aws_env: None) -> None:
    llm = BedrockChat(LLMConfig(model=MODEL))
    events = _events(
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "Checking"}}},
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {
            "contentBlockStart": {
                "contentBlockIndex": 1,
                "start": {"toolUse": {"toolUseId": "t1", "name": "f"}},
            }
        },
        {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"ci'}}}},
        {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": 'ty": "Oslo"}'}}}},
        {"contentBlockStop": {"contentBlockIndex": 1}},
        {"messageStop": {"stopReason": "tool_use"}},
        {
            "metadata": {
                "usage": {"inputTokens": 9, "outputTokens": 4, "totalTokens": 13},
                "metrics": {"latencyMs": 1},
            }
        },
    )
    deltas = [d async for d in llm._deltas(_EventStream(events, "req-1"))]
    assert [d.text for d in deltas] == ["Checking", ""]
    last = deltas[-1]
    assert last.finish_reason == "tool_calls"
    assert last.tool_calls == (ToolCall("t1", "f", {"city": "Oslo"}),)
    assert last.usage is not None and (last.usage.prompt_tokens, last.usage.completion_tokens) == (9, 4)
    assert llm.usage == last.usage


@pytest.mark.parametrize(
    ("reason", "finish"), [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length")]
)
async def test_stop_reasons_are_provider_neutral(aws_env: None, reason: str, finish: str) -> None:
    llm = BedrockChat(LLMConfig(model=MODEL))
    deltas = [
        d async for d in llm._deltas(_EventStream(_events({"messageStop": {"stopReason": reason}}), None))
    ]
    assert deltas[-1].finish_reason == finish and deltas[-1].usage is None


async def test_a_stream_without_message_stop_is_a_connection_error(aws_env: None) -> None:
    llm = BedrockChat(LLMConfig(model=MODEL))
    events = _events({"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "Hal"}}})
    received = []
    with pytest.raises(ProviderConnectionError) as info:
        async for delta in llm._deltas(_EventStream(events, "req-7")):
            received.append(delta.text)
    assert received == ["Hal"] and info.value.request_id == "req-7"


async def test_errors_while_streaming_are_mapped_with_the_request_id(aws_env: None) -> None:
    llm = BedrockChat(LLMConfig(model=MODEL))
    throttled = EventStreamError(
        {"Error": {"Code": "throttlingException", "Message": "slow"}}, "ConverseStream"
    )
    with pytest.raises(RateLimitError) as info:
        _ = [d async for d in llm._deltas(_EventStream(_events(fail=throttled), "req-9"))]
    assert info.value.request_id == "req-9" and info.value.__cause__ is throttled
    cut = aiohttp.ClientPayloadError("Response payload is not completed")
    with pytest.raises(ProviderConnectionError):
        _ = [d async for d in llm._deltas(_EventStream(_events(fail=cut), None))]


# --- against the simulator ----------------------------------------------------------------------------------


async def test_a_bedrock_api_key_is_sent_as_a_bearer_token(
    sim: SimServer, monkeypatch: pytest.MonkeyPatch, aws_env: None
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)  # no SigV4 credentials at all: the API key alone authenticates
    sim.configure(api_key="bedrock-api-key")
    llm = BedrockChat(LLMConfig(model=MODEL, base_url=sim.url, api_key="bedrock-api-key"))
    assert (await llm.complete([{"role": "user", "content": "hi"}])).text == "Simulated answer: hi"
    await llm.aclose()
    wrong = BedrockChat(LLMConfig(model=MODEL, base_url=sim.url, api_key="wrong", max_retries=3))
    with pytest.raises(AuthenticationError):
        await wrong.complete([{"role": "user", "content": "hi"}])
    await wrong.aclose()
    assert sim.stats()["converse"]["requests"] == 2


def test_one_client_per_event_loop_closed_with_its_loop(sim: SimServer, aws_env: None) -> None:
    llm = BedrockChat(LLMConfig(model=MODEL, base_url=sim.url))
    messages = [{"role": "user", "content": "hi"}]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        for _ in range(2):  # successive loops, never aclose(): the loop's shutdown closes its client
            assert asyncio.run(llm.complete(messages)).text == "Simulated answer: hi"
        assert len(llm._clients._entries) == 1  # the dead loop's entry was dropped
        assert all(entry.closed for entry in llm._clients._entries.values())
    assert llm.usage.completion_tokens == 6
