"""The provider contract: every LLM adapter, against the simulator speaking its wire format over real HTTP.

Each provider in PROVIDERS gets the same checks: complete, stream, tools (complete and stream, with the
tool-result round trip), usage accounting, and error mapping (auth not retried, 429 retried then typed,
5xx, unknown model, timeouts, mid-stream disconnects).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mini.config import LLMConfig
from mini.errors import (
    AuthenticationError,
    BadRequestError,
    ProviderConnectionError,
    ProviderServerError,
    ProviderTimeoutError,
    RateLimitError,
)
from mini.llms.base import LLM, Tool, assistant_message, create_llm, tool_result
from mini.testing.sim import SimServer

KEY = "test-key"
SOURCES = "Question: When is glass collected?\n\nSources:\n[1] Glass is collected on Wednesdays. More text.\n\n[2] Paper goes out on Mondays."
EXPECTED = "Glass is collected on Wednesdays. [1] Paper goes out on Mondays. [2]"
WEATHER = Tool(
    name="get_weather",
    description="Current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def _openai(sim: SimServer, monkeypatch: pytest.MonkeyPatch, key: str, **config: Any) -> LLMConfig:
    return LLMConfig(
        model=config.pop("model", "openai:sim-chat"), base_url=sim.base_url, api_key=key, **config
    )


def _anthropic(sim: SimServer, monkeypatch: pytest.MonkeyPatch, key: str, **config: Any) -> LLMConfig:
    return LLMConfig(
        model=config.pop("model", "anthropic:claude-sim"), base_url=sim.url, api_key=key, **config
    )


def _bedrock(sim: SimServer, monkeypatch: pytest.MonkeyPatch, key: str, **config: Any) -> LLMConfig:
    # Bedrock signs with the AWS credential chain; the simulator checks the access key id.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sim-secret")
    model = config.pop("model", "bedrock:anthropic.claude-sim-v1:0")
    return LLMConfig(model=model, base_url=sim.url, region="us-east-1", **config)


PROVIDERS: dict[str, tuple[Callable[..., LLMConfig], str]] = {
    # name: (config factory, the simulator's stats endpoint for it)
    "openai": (_openai, "chat"),
    "anthropic": (_anthropic, "messages"),
    "bedrock": (_bedrock, "converse"),
}


@pytest.fixture(params=sorted(PROVIDERS))
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_llm(provider: str, sim: SimServer, monkeypatch: pytest.MonkeyPatch) -> Callable[..., LLM]:
    sim.configure(api_key=KEY)
    factory, _ = PROVIDERS[provider]

    def make(key: str = KEY, **config: Any) -> LLM:
        return create_llm(factory(sim, monkeypatch, key, **config))

    return make


@pytest.fixture
def endpoint(provider: str) -> str:
    return PROVIDERS[provider][1]


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "Answer from the sources."}, {"role": "user", "content": text}]


async def test_complete_answers_and_counts_usage(make_llm: Callable[..., LLM]) -> None:
    llm = make_llm()
    completion = await llm.complete(_user(SOURCES))
    assert completion.text == EXPECTED
    assert completion.finish_reason == "stop"
    assert completion.tool_calls == ()
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens == 12
    again = await llm.complete(_user(SOURCES))
    assert llm.usage == completion.usage + again.usage  # the running total
    await llm.aclose()


async def test_stream_concatenates_to_the_completion_and_ends_with_usage(
    make_llm: Callable[..., LLM], sim: SimServer, endpoint: str
) -> None:
    llm = make_llm()
    deltas = [d async for d in llm.stream(_user(SOURCES))]
    assert "".join(d.text for d in deltas) == EXPECTED
    assert len([d for d in deltas if d.text]) > 3  # really streamed, piece by piece
    last = deltas[-1]
    assert last.finish_reason == "stop" and last.usage is not None and last.usage.completion_tokens == 12
    assert llm.usage == last.usage
    assert sim.stats()[endpoint]["stream_requests"] == 1
    await llm.aclose()


async def test_tool_calls_round_trip(make_llm: Callable[..., LLM], sim: SimServer, endpoint: str) -> None:
    llm = make_llm()
    sim.script(
        [
            {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]},
            {"content": "It is 3 degrees in Oslo."},
        ]
    )
    messages = _user("What is the weather in Oslo?")
    first = await llm.complete(messages, tools=[WEATHER])
    assert first.finish_reason == "tool_calls"
    assert [(c.name, dict(c.arguments)) for c in first.tool_calls] == [("get_weather", {"city": "Oslo"})]
    assert first.tool_calls[0].id
    follow_up = [*messages, assistant_message(first.text, first.tool_calls)]
    follow_up.append(tool_result(first.tool_calls[0], "3 degrees, cloudy"))
    second = await llm.complete(follow_up, tools=[WEATHER])
    assert second.text == "It is 3 degrees in Oslo."
    assert second.finish_reason == "stop"
    assert sim.stats()[endpoint]["bad_requests"] == 0
    await llm.aclose()


async def test_streamed_tool_calls_arrive_whole_in_the_last_delta(
    make_llm: Callable[..., LLM], sim: SimServer
) -> None:
    llm = make_llm()
    sim.script([{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Bergen"}}]}])
    deltas = [d async for d in llm.stream(_user("Weather in Bergen?"), tools=[WEATHER])]
    last = deltas[-1]
    assert last.finish_reason == "tool_calls"
    assert [(c.name, dict(c.arguments)) for c in last.tool_calls] == [("get_weather", {"city": "Bergen"})]
    assert all(not d.tool_calls for d in deltas[:-1])
    await llm.aclose()


async def test_wrong_key_raises_authentication_error_once_without_retries(
    make_llm: Callable[..., LLM], sim: SimServer, endpoint: str
) -> None:
    llm = make_llm(key="wrong-key", max_retries=5)
    with pytest.raises(AuthenticationError) as info:
        await llm.complete(_user("hello"))
    assert info.value.status_code in (401, 403)
    assert info.value.model and info.value.model in llm.name
    assert info.value.hint
    assert sim.stats()[endpoint]["requests"] == 1
    await llm.aclose()


async def test_rate_limits_are_retried_then_raised_typed_with_retry_after(
    make_llm: Callable[..., LLM], sim: SimServer, endpoint: str
) -> None:
    sim.configure(rate_limit_fraction=1.0, retry_after=0.05)
    llm = make_llm(max_retries=2)
    with pytest.raises(RateLimitError) as info:
        await llm.complete(_user("hello"))
    assert info.value.status_code == 429
    assert info.value.request_id
    stats = sim.stats()[endpoint]
    assert stats["requests"] == 3 and stats["retried"] == 2  # the retries say so in a header
    await llm.aclose()


async def test_transient_faults_are_survived(
    make_llm: Callable[..., LLM], sim: SimServer, endpoint: str
) -> None:
    sim.configure(rate_limit_fraction=0.3, error_fraction=0.2, retry_after=0.01, seed=7)
    llm = make_llm(max_retries=8)
    for _ in range(10):
        assert (await llm.complete(_user(SOURCES))).text == EXPECTED
    stats = sim.stats()[endpoint]
    assert stats["responses_ok"] == 10 and stats["rate_limited"] + stats["errors"] > 0
    await llm.aclose()


async def test_server_errors_map_to_provider_server_error(
    make_llm: Callable[..., LLM], sim: SimServer
) -> None:
    sim.configure(error_fraction=1.0)
    llm = make_llm(max_retries=0)
    with pytest.raises(ProviderServerError) as info:
        await llm.complete(_user("hello"))
    assert info.value.status_code >= 500
    await llm.aclose()


async def test_unknown_model_is_a_bad_request_not_retried(
    make_llm: Callable[..., LLM], provider: str, sim: SimServer, endpoint: str
) -> None:
    llm = make_llm(model=f"{provider}:missing-model", max_retries=3)
    with pytest.raises(BadRequestError, match="missing-model"):
        await llm.complete(_user("hello"))
    assert sim.stats()[endpoint]["requests"] == 1
    await llm.aclose()


async def test_slow_answers_time_out(make_llm: Callable[..., LLM], sim: SimServer) -> None:
    sim.configure(chat_ms=600_000)  # ten minutes: only the client's timeout can end this call
    llm = make_llm(timeout=0.2, max_retries=0)
    with pytest.raises(ProviderTimeoutError):
        await llm.complete(_user("hello"))
    await llm.aclose()


async def test_mid_stream_disconnect_raises_after_the_first_piece_and_is_not_retried(
    make_llm: Callable[..., LLM], sim: SimServer, endpoint: str
) -> None:
    sim.configure(disconnect_fraction=1.0)
    llm = make_llm(max_retries=3)
    received: list[str] = []
    with pytest.raises(ProviderConnectionError):
        async for delta in llm.stream(_user(SOURCES)):
            received.append(delta.text)
    assert "".join(received) == EXPECTED.split()[0]  # the one piece sent before the cut
    stats = sim.stats()[endpoint]
    assert stats["requests"] == 1 and stats["disconnects"] == 1
    await llm.aclose()
