"""The simulator's Bedrock Converse wire format, checked with real aioboto3/aiobotocore clients over HTTP.

botocore signs the requests, URL-encodes the model id, parses JSON errors into its error codes and decodes the
binary event stream with its own parser: if these tests pass, the simulator speaks what botocore expects.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aioboto3
import aiohttp
import pytest
from botocore.config import Config
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from botocore.exceptions import ClientError

from mini.testing.sim import SimServer, answer_for
from mini.testing.sim import bedrock as sim_bedrock

KEY = "AKIASIMULATOR"
MODEL = "anthropic.claude-sim-v1:0"
SOURCES = "Question: When is glass collected?\n\nSources:\n[1] Glass is collected on Wednesdays. More text.\n\n[2] Paper goes out on Mondays."
SYSTEM = [{"text": "Answer from the sources."}]
WEATHER = {
    "toolSpec": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}},
    }
}


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"text": text}]}]


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials; no ~/.aws files and no instance metadata lookups."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sim-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
async def client(sim: SimServer, aws_env: None) -> AsyncIterator[Any]:
    sim.configure(api_key=KEY)
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"})
    session = aioboto3.Session()
    async with session.client(
        "bedrock-runtime", endpoint_url=sim.url, region_name="us-east-1", config=config
    ) as bedrock:
        yield bedrock


async def _events(response: dict[str, Any]) -> list[dict[str, Any]]:
    return [event async for event in response["stream"]]


def test_paths_are_recognised_encoded_or_decoded() -> None:
    assert sim_bedrock.endpoint_of("/model/anthropic.claude-sim-v1%3A0/converse") == "converse"
    assert sim_bedrock.endpoint_of("/model/anthropic.claude-sim-v1:0/converse-stream") == "converse"
    assert (
        sim_bedrock.endpoint_of("/model/arn:aws:bedrock:us-east-1:1:inference-profile/x/converse")
        == "converse"
    )
    assert sim_bedrock.endpoint_of("/model/x/invoke") is None
    assert sim_bedrock.endpoint_of("/v1/chat/completions") is None


def test_authorization_checks_the_sigv4_access_key_id_or_a_bearer_api_key() -> None:
    sigv4 = b"AWS4-HMAC-SHA256 Credential=AKIASIMULATOR/20250101/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=00"
    assert sim_bedrock.authorized({b"authorization": sigv4}, KEY)
    assert not sim_bedrock.authorized({b"authorization": sigv4}, "AKIAOTHER")
    assert sim_bedrock.authorized({b"authorization": b"Bearer bedrock-key"}, "bedrock-key")
    assert not sim_bedrock.authorized({b"authorization": b"Bearer wrong"}, "bedrock-key")
    assert not sim_bedrock.authorized({}, KEY)


def test_event_stream_frames_decode_with_botocore_in_any_chunking() -> None:
    frames = sim_bedrock.encode_event("messageStart", {"role": "assistant"})
    frames += sim_bedrock.encode_event(
        "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi ✓"}}
    )
    frames += sim_bedrock.encode_exception("throttlingException", "slow down")
    buffer = EventStreamBuffer()
    messages = []
    for i in range(len(frames)):  # one byte at a time: the prelude's lengths must frame every message
        buffer.add_data(frames[i : i + 1])
        messages.extend(buffer)
    assert [m.headers[":event-type"] for m in messages[:2]] == ["messageStart", "contentBlockDelta"]
    assert messages[0].headers[":message-type"] == "event"
    assert messages[0].headers[":content-type"] == "application/json"
    assert json.loads(messages[1].payload) == {"contentBlockIndex": 0, "delta": {"text": "Hi ✓"}}
    assert messages[2].headers[":message-type"] == "exception"
    assert messages[2].headers[":exception-type"] == "throttlingException"
    corrupt = bytearray(sim_bedrock.encode_event("messageStop", {"stopReason": "end_turn"}))
    corrupt[-5] ^= 0xFF  # a payload byte: the message CRC no longer matches
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(corrupt))
    with pytest.raises(ChecksumMismatch):
        list(buffer)


async def test_converse_answers_like_the_other_wires(client: Any, sim: SimServer) -> None:
    response = await client.converse(modelId=MODEL, messages=_user(SOURCES), system=SYSTEM)
    expected = answer_for([{"role": "user", "content": SOURCES}])
    assert response["output"]["message"] == {"role": "assistant", "content": [{"text": expected}]}
    assert response["stopReason"] == "end_turn"
    usage = response["usage"]
    assert usage["outputTokens"] == len(expected.split()) == 12
    assert usage["inputTokens"] == len(SOURCES.split()) + len(SYSTEM[0]["text"].split())
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    assert "latencyMs" in response["metrics"]
    assert response["ResponseMetadata"]["RequestId"]
    stats = sim.stats()["converse"]
    assert stats["requests"] == stats["responses_ok"] == 1 and stats["completion_tokens"] == 12


async def test_converse_stream_is_botocore_event_stream_that_concatenates_to_the_answer(
    client: Any, sim: SimServer
) -> None:
    whole = await client.converse(modelId=MODEL, messages=_user(SOURCES), system=SYSTEM)
    response = await client.converse_stream(modelId=MODEL, messages=_user(SOURCES), system=SYSTEM)
    assert response["ResponseMetadata"]["HTTPHeaders"]["content-type"] == sim_bedrock.EVENT_STREAM
    events = await _events(response)
    assert events[0] == {"messageStart": {"role": "assistant"}}
    deltas = [e["contentBlockDelta"] for e in events if "contentBlockDelta" in e]
    assert len(deltas) > 3 and all(d["contentBlockIndex"] == 0 for d in deltas)
    assert "".join(d["delta"]["text"] for d in deltas) == whole["output"]["message"]["content"][0]["text"]
    assert [next(iter(e)) for e in events[-3:]] == ["contentBlockStop", "messageStop", "metadata"]
    assert events[-2]["messageStop"]["stopReason"] == "end_turn"
    assert events[-1]["metadata"]["usage"] == whole["usage"]
    stats = sim.stats()["converse"]
    assert stats["stream_requests"] == 1 and stats["completion_tokens"] == 24


async def test_tool_use_round_trip(client: Any, sim: SimServer) -> None:
    sim.script(
        [
            {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]},
            {"content": "3 degrees in Oslo."},
        ]
    )
    tools = {"tools": [WEATHER]}
    first = await client.converse(modelId=MODEL, messages=_user("Weather in Oslo?"), toolConfig=tools)
    assert first["stopReason"] == "tool_use"
    [block] = first["output"]["message"]["content"]
    use = block["toolUse"]
    assert use["name"] == "get_weather" and use["input"] == {"city": "Oslo"} and use["toolUseId"]
    result = {"toolResult": {"toolUseId": use["toolUseId"], "content": [{"text": "3 degrees, cloudy"}]}}
    messages = [*_user("Weather in Oslo?"), first["output"]["message"], {"role": "user", "content": [result]}]
    second = await client.converse(modelId=MODEL, messages=messages, toolConfig=tools)
    assert second["output"]["message"]["content"] == [{"text": "3 degrees in Oslo."}]
    assert second["stopReason"] == "end_turn"
    assert sim.stats()["converse"]["bad_requests"] == 0


async def test_streamed_tool_use_input_arrives_in_fragments(client: Any, sim: SimServer) -> None:
    arguments = {"city": "Bergen", "unit": "celsius"}
    sim.script([{"tool_calls": [{"name": "get_weather", "arguments": arguments}]}])
    response = await client.converse_stream(
        modelId=MODEL, messages=_user("Weather in Bergen?"), toolConfig={"tools": [WEATHER]}
    )
    events = await _events(response)
    [start] = [e["contentBlockStart"] for e in events if "contentBlockStart" in e]
    assert start["start"]["toolUse"]["name"] == "get_weather" and start["start"]["toolUse"]["toolUseId"]
    fragments = [
        e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events if "contentBlockDelta" in e
    ]
    assert len(fragments) >= 2
    assert json.loads("".join(fragments)) == arguments
    assert {"messageStop": {"stopReason": "tool_use"}} in events


@pytest.mark.parametrize(
    ("settings", "code", "status"),
    [
        ({"api_key": "AKIAOTHER"}, "UnrecognizedClientException", 403),
        ({"rate_limit_fraction": 1.0, "retry_after": 2}, "ThrottlingException", 429),
        ({"error_fraction": 1.0}, "InternalServerException", 500),
    ],
)
async def test_faults_are_aws_json_errors_botocore_maps_to_codes(
    client: Any, sim: SimServer, settings: dict[str, Any], code: str, status: int
) -> None:
    sim.configure(**settings)
    with pytest.raises(ClientError) as info:
        await client.converse(modelId=MODEL, messages=_user("hello"))
    response = info.value.response
    assert response["Error"]["Code"] == code
    assert response["Error"]["Message"]
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert response["ResponseMetadata"]["RequestId"].startswith("req_sim_")
    if status == 429:
        assert isinstance(info.value, client.exceptions.ThrottlingException)
        assert response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "2"
    # The streaming operation fails the same way, before any event.
    with pytest.raises(ClientError) as streamed:
        await client.converse_stream(modelId=MODEL, messages=_user("hello"))
    assert streamed.value.response["Error"]["Code"] == code


async def test_unknown_model_is_a_validation_exception_naming_it(client: Any, sim: SimServer) -> None:
    with pytest.raises(client.exceptions.ValidationException, match="missing-model"):
        await client.converse(modelId="missing-model", messages=_user("hello"))
    assert sim.stats()["converse"]["bad_requests"] == 1


@pytest.mark.parametrize(
    ("messages", "extra", "match"),
    [
        ([*_user("a"), *_user("b")], {}, "alternate"),
        ([{"role": "assistant", "content": [{"text": "hi"}]}, *_user("b")], {}, "alternate"),
        (_user(" "), {}, "blank"),
        (
            [
                *_user("a"),
                {
                    "role": "assistant",
                    "content": [{"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}}],
                },
                {
                    "role": "user",
                    "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "x"}]}}],
                },
            ],
            {},
            "toolConfig",
        ),
        (
            [
                *_user("a"),
                {
                    "role": "assistant",
                    "content": [{"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}}],
                },
                *_user("no result"),
            ],
            {"toolConfig": {"tools": [WEATHER]}},
            "t1",
        ),
    ],
)
async def test_conversations_bedrock_rejects_are_rejected(
    client: Any, sim: SimServer, messages: list[dict[str, Any]], extra: dict[str, Any], match: str
) -> None:
    with pytest.raises(client.exceptions.ValidationException, match=match):
        await client.converse(modelId=MODEL, messages=messages, **extra)


async def test_mid_stream_disconnect_cuts_the_connection_after_the_first_piece(
    client: Any, sim: SimServer
) -> None:
    sim.configure(disconnect_fraction=1.0)
    response = await client.converse_stream(modelId=MODEL, messages=_user(SOURCES))
    received: list[dict[str, Any]] = []
    try:
        with pytest.raises(aiohttp.ClientPayloadError):
            async for event in response["stream"]:
                received.append(event)
    finally:
        response["stream"].close()  # release the broken connection now, not when it is garbage collected
    assert [next(iter(e)) for e in received] == ["messageStart", "contentBlockDelta"]
    assert sim.stats()["converse"]["disconnects"] == 1


async def test_retries_are_counted_from_the_mini_header(client: Any, sim: SimServer) -> None:
    def mark_retry(request: Any, **_: Any) -> None:
        request.headers["x-mini-retry-count"] = "1"

    client.meta.events.register("before-send.bedrock-runtime", mark_retry)
    await client.converse(modelId=MODEL, messages=_user("hello"))
    assert sim.stats()["converse"]["retried"] == 1
    assert sim.arrivals()[0][1:] == ("converse", 200, 1)
