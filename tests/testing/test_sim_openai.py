"""The simulated OpenAI server, exercised through the real openai SDK over HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import numpy as np
import openai
import pytest
from openai import AsyncOpenAI

from mini.query.prompts import answer_messages, format_context, parse_rewrites, rewrite_messages
from mini.testing.sim import SimServer, answer_for, embed_text
from mini.types import RetrievalResult

# Every test starts from these settings (and zeroed stats), whatever the previous test configured.
BASELINE = {
    "chat_ms": 0,
    "token_ms": 0,
    "embed_ms": 0,
    "embed_input_ms": 0,
    "dim": 384,
    "max_in_flight": 0,
    "rate_limit_fraction": 0.0,
    "error_fraction": 0.0,
    "retry_after": 1,
    "seed": 0,
    "api_key": None,
}


@pytest.fixture(scope="module")
def server() -> Iterator[SimServer]:
    with SimServer(**BASELINE) as sim:
        yield sim


@pytest.fixture(autouse=True)
def fresh_server(server: SimServer) -> SimServer:
    server.configure(**BASELINE)
    server.reset()
    return server


@pytest.fixture
async def client(server: SimServer) -> AsyncIterator[AsyncOpenAI]:
    sdk = AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    yield sdk
    await sdk.close()


def _cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _sources(*texts: str) -> str:
    chunks = [
        RetrievalResult(id=f"c{i}", text=t, score=1.0, metadata={"source": f"doc{i}.txt"})
        for i, t in enumerate(texts)
    ]
    return format_context(chunks)


async def test_embeddings_default_base64_path_matches_float_path(client: AsyncOpenAI) -> None:
    texts = ["The cat sat on the mat.", "Quarterly budget report"]
    default = await client.embeddings.create(input=texts, model="sim-embed")  # SDK asks for base64
    floats = await client.embeddings.create(input=texts, model="sim-embed", encoding_format="float")
    raw = await client.embeddings.create(input=texts, model="sim-embed", encoding_format="base64")
    for a, b, c in zip(default.data, floats.data, raw.data, strict=True):
        assert len(a.embedding) == 384
        assert a.embedding == pytest.approx(b.embedding, abs=1e-7)
        decoded = np.frombuffer(base64.b64decode(str(c.embedding)), dtype="<f4")
        assert decoded.tolist() == pytest.approx(b.embedding, abs=1e-7)
    assert default.model == "sim-embed"
    assert default.usage.prompt_tokens == 9  # \w+ tokens: 6 + 3


async def test_embeddings_are_deterministic_normalised_and_similarity_preserving(client: AsyncOpenAI) -> None:
    texts = ["the cat sat on the mat", "the cat sat on a mat", "quarterly budget report for finance", ""]
    first = [d.embedding for d in (await client.embeddings.create(input=texts, model="m")).data]
    second = [d.embedding for d in (await client.embeddings.create(input=texts, model="m")).data]
    assert first == second
    assert first[0] == pytest.approx(embed_text(texts[0], 384).tolist(), abs=1e-7)  # stable across processes
    assert [float(np.linalg.norm(v)) for v in first] == pytest.approx([1.0] * 4, abs=1e-5)
    assert _cosine(first[0], first[1]) > 0.8 > 0.2 > _cosine(first[0], first[2])
    assert first[3][0] == 1.0 and sum(abs(x) for x in first[3]) == 1.0  # empty text: unit vector on dim 0


async def test_embeddings_honour_dimensions_and_count_inputs(client: AsyncOpenAI, server: SimServer) -> None:
    response = await client.embeddings.create(input="one two", model="m", dimensions=64)
    assert len(response.data[0].embedding) == 64
    stats = server.stats()["embeddings"]
    assert (stats["requests"], stats["responses_ok"], stats["inputs_embedded"]) == (1, 1, 1)


async def test_chat_cites_the_first_sentences_of_sources_one_and_two(client: AsyncOpenAI) -> None:
    context = _sources(
        "The budget is 4 million euros. It was approved in May.", "Costs rose by 3%! Mostly staff."
    )
    messages = answer_messages("What is the budget?", context)
    response = await client.chat.completions.create(model="sim-chat", messages=messages)
    assert response.choices[0].message.content == "The budget is 4 million euros. [1] Costs rose by 3%! [2]"
    assert response.choices[0].finish_reason == "stop"
    assert response.model == "sim-chat"
    assert response.usage is not None
    assert response.usage.completion_tokens == 12  # whitespace tokens, markers included
    assert response.usage.prompt_tokens == sum(len(m["content"].split()) for m in messages)


async def test_chat_answers_rewrite_prompts_with_n_variants(client: AsyncOpenAI) -> None:
    question = "How is the budget approved?"
    response = await client.chat.completions.create(model="m", messages=rewrite_messages(question, n=3))
    content = response.choices[0].message.content or ""
    assert content.splitlines() == [f"{question} (variant {i})" for i in (1, 2, 3)]
    assert len(parse_rewrites(content, original=question, n=3)) == 3


def test_answer_rules_fall_back_to_an_echo() -> None:
    assert answer_for([{"role": "user", "content": "hello there"}]) == "Simulated answer: hello there"
    single = answer_for(answer_messages("q", _sources("Only one. Really.")))
    assert single == "Only one. [1]"


async def test_stream_chunks_concatenate_to_the_non_stream_answer(
    client: AsyncOpenAI, server: SimServer
) -> None:
    messages = answer_messages("q?", _sources("Alpha beta gamma. Delta.", "Epsilon zeta."))
    whole = await client.chat.completions.create(model="m", messages=messages)
    stream = await client.chat.completions.create(
        model="m",
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert all(c.usage is None for c in chunks[:-1])
    assert server.stats()["chat"]["stream_requests"] == 1


async def test_requests_beyond_max_in_flight_get_429_with_retry_after(
    client: AsyncOpenAI, server: SimServer
) -> None:
    server.configure(max_in_flight=2, chat_ms=200, retry_after=0.5)
    messages = [{"role": "user", "content": "hi"}]
    results = await asyncio.gather(
        *(client.chat.completions.create(model="m", messages=messages) for _ in range(8)),
        return_exceptions=True,
    )
    limited = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(limited) >= 1 and len(limited) + sum(not isinstance(r, Exception) for r in results) == 8
    assert limited[0].response.headers["retry-after"] == "1"
    assert limited[0].response.headers["retry-after-ms"] == "500"
    assert limited[0].body == {
        "message": "Rate limit reached (simulated).",
        "type": "rate_limit_exceeded",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    stats = server.stats()
    assert stats["peak_in_flight"] <= 2
    assert stats["chat"]["rate_limited"] == len(limited)
    assert stats["total"]["in_flight"] == 0


async def test_rate_limit_fraction_is_seeded_and_reproducible(client: AsyncOpenAI, server: SimServer) -> None:
    server.configure(rate_limit_fraction=0.5, seed=7)

    async def pattern() -> list[bool]:
        outcomes = []
        for _ in range(20):  # sequential, so the RNG draws happen in a fixed order
            try:
                await client.embeddings.create(input="x", model="m")
                outcomes.append(True)
            except openai.RateLimitError:
                outcomes.append(False)
        return outcomes

    first = await pattern()
    server.reset()  # reseeds the RNG
    assert await pattern() == first
    assert 0 < first.count(False) < 20


async def test_error_fraction_one_gives_500(client: AsyncOpenAI, server: SimServer) -> None:
    server.configure(error_fraction=1.0)
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 500
    assert server.stats()["chat"]["errors"] == 1


async def test_api_key_is_enforced_when_configured(server: SimServer) -> None:
    server.configure(api_key="secret")
    wrong = AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    right = AsyncOpenAI(base_url=server.base_url, api_key="secret", max_retries=0)
    try:
        with pytest.raises(openai.AuthenticationError):
            await wrong.embeddings.create(input="x", model="m")
        with pytest.raises(openai.AuthenticationError):
            await wrong.models.list()
        assert (await right.embeddings.create(input="x", model="m")).data
        assert {m.id for m in (await right.models.list()).data} == {"sim-chat", "sim-embed"}
    finally:
        await wrong.close()
        await right.close()
    assert server.stats()["embeddings"]["unauthorized"] == 1


async def test_peak_in_flight_counts_concurrent_requests(client: AsyncOpenAI, server: SimServer) -> None:
    server.configure(chat_ms=200)
    messages = [{"role": "user", "content": "hello"}]
    await asyncio.gather(*(client.chat.completions.create(model="m", messages=messages) for _ in range(16)))
    stats = server.stats()
    assert (
        stats["peak_in_flight"] == stats["chat"]["peak_in_flight"] == stats["total"]["peak_in_flight"] == 16
    )
    assert stats["chat"]["responses_ok"] == 16 and stats["total"]["in_flight"] == 0


async def test_reset_zeroes_stats_and_clears_scripts(client: AsyncOpenAI, server: SimServer) -> None:
    await client.embeddings.create(input="x", model="m")
    server.script([{"content": "never served"}])
    stats = server.reset()
    assert stats["total"]["requests"] == 0 and stats["peak_in_flight"] == 0
    response = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert response.choices[0].message.content == "Simulated answer: hi"


def test_config_round_trips_and_rejects_unknown_settings(server: SimServer) -> None:
    effective = server.configure(chat_ms="25", max_in_flight=3)
    assert effective["chat_ms"] == 25.0 and effective["max_in_flight"] == 3
    assert server.config() == effective
    with pytest.raises(ValueError, match="unknown settings: chat_latency"):
        server.configure(chat_latency=1)
    with pytest.raises(ValueError, match="unknown settings"):
        SimServer(chat_latency=1)


async def test_scripted_tool_call_is_parsed_by_the_sdk(client: AsyncOpenAI, server: SimServer) -> None:
    tool = {"name": "search", "arguments": {"query": "budget 2024", "top_k": 3}}
    messages = [{"role": "user", "content": "find it"}]
    script = [{"tool_calls": [tool]}, {"content": "The budget is known."}, {"tool_calls": [tool]}]
    server.script(script)
    first = await client.chat.completions.create(model="m", messages=messages)
    calls = first.choices[0].message.tool_calls or []
    assert first.choices[0].finish_reason == "tool_calls"
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("search", {"query": "budget 2024", "top_k": 3})
    ]
    second = await client.chat.completions.create(model="m", messages=messages)
    assert second.choices[0].message.content == "The budget is known."
    stream = await client.chat.completions.create(model="m", messages=messages, stream=True)
    chunks = [chunk async for chunk in stream]
    deltas = [call for c in chunks for call in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].function is not None and deltas[0].function.name == "search"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    third = await client.chat.completions.create(model="m", messages=messages)
    assert third.choices[0].message.content == "Simulated answer: find it"


async def test_client_disconnect_mid_stream_releases_in_flight(
    client: AsyncOpenAI, server: SimServer
) -> None:
    server.configure(token_ms=20)
    long_question = " ".join(f"word{i}" for i in range(100))
    stream = await client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": long_question}],
        stream=True,
    )
    received = 0
    async for _ in stream:
        received += 1
        if received == 3:
            break
    assert server.stats()["chat"]["in_flight"] == 1
    await stream.close()
    # The server notices the closed socket asynchronously; the deadline is only for a broken server.
    stats = await asyncio.to_thread(server.wait_for, "chat", in_flight=0, timeout=30)
    assert stats["completion_tokens"] < 102  # generation stopped early
    assert stats["clients_gone"] == 1 and stats["disconnects"] == 0
    # A traceback would be logged by the request's own task before the wait above was answered.
    assert "Traceback" not in server.logs()


@pytest.mark.parametrize("endpoint", ["chat", "embeddings"])
async def test_a_client_leaving_before_the_response_ends_the_request(
    server: SimServer, endpoint: str
) -> None:
    # Ten minutes of simulated latency: only the client leaving can end these requests in time.
    server.configure(chat_ms=600_000, embed_ms=600_000)
    request = (
        {
            "path": "/v1/chat/completions",
            "json": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        }
        if endpoint == "chat"
        else {"path": "/v1/embeddings", "json": {"model": "m", "input": ["hi"]}}
    )
    async with httpx.AsyncClient(base_url=server.url) as http:
        task = asyncio.create_task(http.post(request["path"], json=request["json"]))
        await asyncio.to_thread(server.wait_for, endpoint, in_flight=1)
        task.cancel()  # closes the connection
        with pytest.raises(asyncio.CancelledError):
            await task
    stats = await asyncio.to_thread(server.wait_for, endpoint, in_flight=0, clients_gone=1, timeout=30)
    assert stats["responses_ok"] == 0 and stats["errors"] == 0
    assert [e for _, e in server.clients_gone()] == [endpoint]
    assert "Traceback" not in server.logs()


async def test_wait_for_blocks_until_counters_reach_values_and_clients_gone_records_when(
    client: AsyncOpenAI, server: SimServer
) -> None:
    server.configure(chat_ms=600_000)  # the first token would take 10 minutes: only closing ends the stream
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    opened = await asyncio.to_thread(server.wait_for, "chat", in_flight=1, stream_requests=1)
    assert opened["requests"] == 1 and server.clients_gone() == []
    with pytest.raises(TimeoutError, match="in_flight"):
        await asyncio.to_thread(server.wait_for, "chat", in_flight=0, timeout=0.2)
    with pytest.raises(ValueError, match="unknown endpoint"):
        server.wait_for("nowhere", in_flight=0)
    closed = time.monotonic()
    await stream.close()
    gone = await asyncio.to_thread(server.wait_for, in_flight=0, clients_gone=1, timeout=30)
    assert gone["responses_ok"] == 1  # the status line went out before the client left
    [(at, endpoint)] = server.clients_gone()
    assert endpoint == "chat" and closed <= at  # one monotonic clock for both processes (Linux)
    server.reset()
    assert server.clients_gone() == [] and server.stats()["total"]["clients_gone"] == 0


async def test_bad_requests_get_openai_style_400(client: AsyncOpenAI, server: SimServer) -> None:
    with pytest.raises(openai.BadRequestError, match="input must be a string"):
        await client.embeddings.create(input=[[1, 2, 3]], model="m")
    assert server.stats()["embeddings"]["bad_requests"] == 1


async def test_api_key_flag_is_enforced_and_stop_reaps_the_process() -> None:
    with SimServer(api_key="k", chat_ms=0) as sim:
        assert sim.config()["api_key"] == "k"
        for key, expected in (("wrong", openai.AuthenticationError), ("k", None)):
            sdk = AsyncOpenAI(base_url=sim.base_url, api_key=key, max_retries=0)
            try:
                if expected is None:
                    assert (await sdk.embeddings.create(input="x", model="m")).data
                else:
                    with pytest.raises(expected):
                        await sdk.embeddings.create(input="x", model="m")
            finally:
                await sdk.close()
        process = sim._process
        assert process is not None and process.poll() is None
    assert process.poll() is not None  # terminated and reaped, not left as a zombie


def test_start_failure_raises_with_the_server_stderr() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(RuntimeError, match="address already in use"):
            SimServer(port=taken.getsockname()[1]).start()


async def test_slow_fraction_delays_admitted_requests(client: AsyncOpenAI, server: SimServer) -> None:
    server.configure(slow_fraction=1.0, slow_ms=150)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await client.embeddings.create(input="x", model="m")
    assert loop.time() - started >= 0.15
    server.configure(slow_fraction=0.0)
    started = loop.time()
    await client.embeddings.create(input="x", model="m")
    assert loop.time() - started < 0.15


async def test_arrivals_log_status_and_retry_count(client: AsyncOpenAI, server: SimServer) -> None:
    server.configure(rate_limit_fraction=1.0, retry_after=0.01)
    retrying = AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=2)
    try:
        with pytest.raises(openai.RateLimitError):
            await retrying.embeddings.create(input="x", model="m")
    finally:
        await retrying.close()
    arrivals = server.arrivals()
    assert [(endpoint, status, retry) for _, endpoint, status, retry in arrivals] == [
        ("embeddings", 429, 0),
        ("embeddings", 429, 1),
        ("embeddings", 429, 2),
    ]
    times = [t for t, *_ in arrivals]
    assert times == sorted(times)
    assert server.stats()["embeddings"]["retried"] == 2
