"""The OpenAI-compatible API (`mini.server.openai_compat`) through the official `openai` SDK and plain httpx,
against a real uvicorn server (its own thread and loop) and the simulated LLM."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from mini import AgenticRAG, RetrievalConfig
from mini._sse import SSEDecoder, decode
from mini.testing.server_thread import ServerThread
from tests.servers import indexed_rag, serve

QUESTION = "How much is the 2025 library budget?"


@pytest.fixture
def rag(sim: Any, tmp_path: Path) -> AgenticRAG:
    return indexed_rag(sim, tmp_path)


@pytest.fixture
def server(rag: AgenticRAG) -> Iterator[ServerThread]:
    with serve(rag) as server:
        yield server


def stream_question(server: ServerThread) -> AbstractContextManager[httpx.Response]:
    """A streamed completion asking QUESTION, opened with httpx (a context manager, like `httpx.stream`)."""
    body = {"model": "m", "messages": [{"role": "user", "content": QUESTION}], "stream": True}
    return httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=30)


def sdk(server: ServerThread, api_key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=api_key, max_retries=0, timeout=30)


def test_models_list(server: ServerThread) -> None:
    with sdk(server) as client:
        models = client.models.list()
        assert [m.id for m in models.data] == ["mini-rag"]
        assert models.data[0].owned_by == "mini-rag"
        assert isinstance(models.data[0].created, int)
        assert client.models.retrieve("gpt-4o").id == "gpt-4o"  # every name is served


def test_chat_completion_with_sources_and_citations(server: ServerThread) -> None:
    with sdk(server) as client:
        completion = client.chat.completions.create(
            model="any-model-name",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": "Hi! Ask me about the town."},
                {"role": "user", "content": [{"type": "text", "text": QUESTION}]},
            ],
            temperature=0.2,
            max_tokens=300,
            top_p=0.9,
            user="someone",
            extra_body={"unknown_field": {"ignored": True}},
        )
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-") and len(completion.id) == len("chatcmpl-") + 32
    assert completion.model == "any-model-name"
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    answer = choice.message.content
    assert answer and "[1]" in answer
    assert "$1.2 million" in answer  # it answered the last user message, not the earlier "Hello"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert (
        completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )

    extra = completion.model_extra or {}
    sources = extra["sources"]
    assert sources and completion.sources == sources  # type: ignore[attr-defined]
    assert [s["number"] for s in sources] == list(range(1, len(sources) + 1))
    assert set(sources[0]) == {"number", "id", "source", "score", "text", "metadata"}
    citations = extra["citations"]
    assert citations and citations[0]["number"] == 1
    assert citations[0]["chunk_id"] == sources[0]["id"]


def test_stream_matches_the_non_stream_answer(server: ServerThread) -> None:
    messages: Any = [{"role": "user", "content": QUESTION}]
    with sdk(server) as client:
        answer = (
            client.chat.completions.create(model="mini-rag", messages=messages).choices[0].message.content
        )
        chunks = list(
            client.chat.completions.create(
                model="mini-rag", messages=messages, stream=True, stream_options={"include_usage": True}
            )
        )
    assert answer
    first, *_, final, usage = chunks
    assert first.choices[0].delta.role == "assistant"
    sources = (first.model_extra or {})["sources"]
    assert sources and sources[0]["number"] == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == answer
    assert final.choices[0].finish_reason == "stop"
    assert (final.model_extra or {})["citations"][0]["number"] == 1
    assert usage.choices == [] and usage.usage is not None and usage.usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1 and all(c.model == "mini-rag" for c in chunks)


def test_stream_without_usage_has_no_usage_chunk(server: ServerThread) -> None:
    with sdk(server) as client:
        chunks = list(
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": QUESTION}], stream=True
            )
        )
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices for c in chunks)


async def test_async_client(server: ServerThread) -> None:
    async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as client:
        models = await client.models.list()
        assert [m.id for m in models.data] == ["mini-rag"]
        completion = await client.chat.completions.create(
            model="mini-rag", messages=[{"role": "user", "content": QUESTION}]
        )
        answer = completion.choices[0].message.content
        assert answer and (completion.model_extra or {})["sources"]
        stream = await client.chat.completions.create(
            model="mini-rag", messages=[{"role": "user", "content": QUESTION}], stream=True
        )
        parts = [chunk.choices[0].delta.content or "" async for chunk in stream]
    assert "".join(parts) == answer


def test_api_key_is_required_when_configured(rag: AgenticRAG) -> None:
    with serve(rag, api_keys="k1") as server:
        with sdk(server, api_key="wrong") as client, pytest.raises(openai.AuthenticationError) as info:
            client.models.list()
        assert info.value.status_code == 401
        assert isinstance(info.value.body, dict) and info.value.body["type"] == "unauthorized"
        with sdk(server, api_key="wrong") as client, pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": QUESTION}])
        with sdk(server, api_key="k1") as client:
            assert client.models.list().data[0].id == "mini-rag"
            completion = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": QUESTION}]
            )
            assert completion.choices[0].message.content


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "no user message"),
        ([{"role": "system", "content": "Be brief."}], "no user message"),
        ([{"role": "user", "content": QUESTION}, {"role": "user", "content": "   "}], "empty"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "empty"),
        ([{"role": "user", "content": "x" * 50}], "limit is 20"),
    ],
)
def test_invalid_questions_are_422_with_our_error_shape(
    rag: AgenticRAG, sim: Any, messages: list[dict[str, Any]], message: str
) -> None:
    with serve(rag, max_question_chars=20) as server:
        for stream in (False, True):
            response = httpx.post(
                server.url + "/v1/chat/completions",
                json={"model": "m", "messages": messages, "stream": stream},
                timeout=30,
            )
            assert response.status_code == 422, response.text
            body = response.json()
            assert body["type"] == "invalid_input" and message in body["message"]
            assert set(body) == {"type", "message"}
    assert sim.stats()["chat"]["requests"] == 0  # refused before any LLM call


def test_malformed_request_is_422(server: ServerThread) -> None:
    response = httpx.post(server.url + "/v1/chat/completions", json={"model": "m"}, timeout=30)
    assert response.status_code == 422
    assert response.json()["type"] == "invalid_request" and "messages" in response.json()["message"]
    with sdk(server) as client, pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": ""}])


def test_an_error_mid_stream_is_an_error_chunk_then_done(server: ServerThread, sim: Any) -> None:
    sim.configure(disconnect_fraction=1.0)  # the LLM stream is cut after its first piece
    with stream_question(server) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        frames = [event.data for event in decode(response.iter_bytes())]
    assert frames[-1] == "[DONE]"
    payloads = [json.loads(f) for f in frames[:-1]]
    assert payloads[0]["sources"]
    assert payloads[1]["choices"][0]["delta"]["content"]  # the one piece the LLM sent
    assert set(payloads[-1]) == {"error"} and set(payloads[-1]["error"]) == {"type", "message"}
    # The official SDK raises on the error chunk, after the chunks before it.
    with sdk(server) as client:
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": QUESTION}], stream=True
        )
        received: list[Any] = []
        with pytest.raises(openai.APIError):
            received.extend(stream)
        assert received and received[0].choices[0].delta.role == "assistant"


def test_closing_the_stream_closes_the_upstream_llm_stream(
    rag: AgenticRAG, server: ServerThread, sim: Any
) -> None:
    # No rewriting (a non-stream call before the first chunk); after its first piece the answer would take
    # ten minutes: only the server closing the upstream stream can end it within the test.
    rag.retrieval_config = RetrievalConfig(use_query_rewriting=False)
    sim.configure(token_ms=600_000)

    with stream_question(server) as response:
        chunks = response.iter_bytes()  # kept referenced: dropping the iterator would close the response now
        decoder = SSEDecoder()
        first: list[Any] = []
        while not first:
            first = decoder.feed(next(chunks))
        assert first[0].json()["sources"]
        sim.wait_for("chat", in_flight=1, timeout=30)  # the LLM stream is open behind the first chunk
    # The client closed the connection after one chunk: the server must close the upstream stream (the
    # deadline is only for a broken server; the 100 ms bound is proven in test_server's disconnect test).
    sim.wait_for("chat", in_flight=0, clients_gone=1, timeout=30)
    stats = sim.stats()["chat"]
    assert stats["stream_requests"] == 1
    assert stats["completion_tokens"] < 10  # cut short after a few pieces, not streamed to the end
