"""Every surface that answers a question goes through the one query pipeline: the same question with the same
settings gives the same sources, in the same order, with the same scores, whether it is asked through the
library, `mini query --json`, `/v1/query`, `/v1/chat/stream`, `/v1/chat/completions` or the agent's search tool.
Conversations (library and OpenAI-compatible history) condense follow-ups through the same pipeline."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mini import AgenticRAG, EmbeddingModel, RetrievalConfig, VectorStore
from mini._sse import decode
from mini.errors import AuthenticationError, InvalidInputError
from mini.server import ServerSettings, create_app
from mini.testing.fakes import ScriptedLLM
from mini.testing.server_thread import ServerThread
from tests.conftest import SAMPLE_CORPUS

QUESTION = "When is glass collected for recycling?"
MINI = Path(sys.executable).with_name("mini")

Ranked = list[tuple[str, float]]


def ranked(sources: list[dict[str, Any]]) -> Ranked:
    return [(s["id"], s["score"]) for s in sources]


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample corpus indexed with the bundled local model (what `mini query` uses by default)."""
    path = tmp_path_factory.mktemp("one-pipeline") / "store"
    rag = AgenticRAG(VectorStore(str(path), collection_name="docs"), EmbeddingModel())
    assert rag.index_documents([SAMPLE_CORPUS]).ok
    rag.close()
    return path


def offline_rag(store_dir: Path) -> AgenticRAG:
    return AgenticRAG(VectorStore(str(store_dir), collection_name="docs"), EmbeddingModel())


@pytest.fixture
def server(store_dir: Path) -> Iterator[tuple[ServerThread, AgenticRAG]]:
    rag = offline_rag(store_dir)
    with ServerThread(create_app(rag, settings=ServerSettings())) as running:
        yield running, rag
        assert running.loop is not None  # the rag's clients belong to the server's loop
        asyncio.run_coroutine_threadsafe(rag.aclose(), running.loop).result(timeout=10)


def cli_sources(store_dir: Path, tmp_path: Path) -> Ranked:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "MINI_"))}
    done = subprocess.run(
        [str(MINI), "query", "--json", "--llm", "none", "--uri", str(store_dir), QUESTION],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return [(c["id"], c["score"]) for c in json.loads(done.stdout)["retrieved_chunks"]]


def sse_sources(response: httpx.Response) -> Ranked:
    for event in decode(response.iter_bytes()):
        if event.event == "sources":
            return ranked(event.json())
    raise AssertionError("no sources event")


def test_every_surface_returns_the_same_sources_in_the_same_order_with_the_same_scores(
    store_dir: Path, server: tuple[ServerThread, AgenticRAG], tmp_path: Path
) -> None:
    running, _ = server
    rag = offline_rag(store_dir)
    response = rag.query(QUESTION)
    library = [(c.id, c.score) for c in response.retrieved_chunks]
    assert len(library) >= 3 and response.metadata["retrieval"]["mode"] == "hybrid"

    seen: dict[str, Ranked] = {"cli": cli_sources(store_dir, tmp_path)}
    with httpx.Client(base_url=running.url, timeout=60) as client:
        seen["/v1/query"] = ranked(client.post("/v1/query", json={"question": QUESTION}).json()["sources"])
        with client.stream("POST", "/v1/chat/stream", json={"message": QUESTION}) as stream:
            seen["/v1/chat/stream"] = sse_sources(stream)
        completion = client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": QUESTION}]}
        )
        seen["/v1/chat/completions"] = ranked(completion.json()["sources"])

    rag.llm = ScriptedLLM(["unused"])  # the agent's own run, as agent_query builds it
    agent = rag._agent_run(QUESTION, (), 4, None, None, 4, None, None)
    asyncio.run(agent.search_documents(QUESTION, top_k=len(library)))
    seen["agent search tool"] = [(c.id, c.score) for c in agent.chunks]
    rag.close()

    for surface, sources in seen.items():
        assert sources == library, surface


def test_per_request_mode_and_filter_reach_the_pipeline(server: tuple[ServerThread, AgenticRAG]) -> None:
    running, _ = server
    with httpx.Client(base_url=running.url, timeout=60) as client:
        dense = client.post("/v1/query", json={"question": QUESTION, "mode": "dense"}).json()
        assert dense["metadata"]["retrieval"]["mode"] == "dense"
        assert set(dense["metadata"]["retrieval"]["legs"]) == {"dense"}
        source = dense["sources"][0]["source"]
        only = client.post("/v1/query", json={"question": QUESTION, "filter": {"source": source}}).json()
        assert {s["source"] for s in only["sources"]} == {source}
        bad = client.post("/v1/query", json={"question": QUESTION, "mode": "semantic"})
        assert bad.status_code == 422
        for path, body in (
            ("/v1/query/stream", {"question": QUESTION}),
            ("/v1/chat/stream", {"message": QUESTION}),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": QUESTION}], "stream": True}),
        ):  # a bad filter is refused before any stream starts, on every route
            refused = client.post(path, json={**body, "filter": {"year": {"$near": 3}}})
            assert refused.status_code == 422, (path, refused.text)
            assert "operator" in refused.json()["message"]
        with client.stream(
            "POST",
            "/v1/chat/stream",
            json={"message": QUESTION, "mode": "keyword", "filter": {"source": source}},
        ) as stream:
            events = list(decode(stream.iter_bytes()))
        done = next(e.json() for e in events if e.event == "done")
        assert done["metadata"]["retrieval"]["mode"] == "keyword"
        assert {s["source"] for s in next(e.json() for e in events if e.event == "sources")} == {source}


def scripted(condensed: str) -> ScriptedLLM:
    def reply(prompt: str) -> str:
        if "Standalone question:" in prompt:
            return condensed
        return "Glass goes out on the first Monday of the month [1]."

    return ScriptedLLM(reply)


def chatty_rag(store_dir: Path, llm: ScriptedLLM) -> AgenticRAG:
    """The indexed store with a scripted model; no rewriting, so the model's calls are condense and answer."""
    return AgenticRAG(
        VectorStore(str(store_dir), collection_name="docs"),
        EmbeddingModel(),
        llm=llm,
        retrieval_config=RetrievalConfig(use_query_rewriting=False),
    )


def test_a_library_conversation_condenses_the_follow_up_with_its_history(store_dir: Path) -> None:
    llm = scripted("When is glass collected for recycling in Harbor Town?")
    rag = chatty_rag(store_dir, llm)
    chat = rag.conversation()
    first = chat.ask("Which town is this about?")
    assert first.metadata["condense"] == "skipped: no history"
    second = chat.ask("When is glass collected there?")
    assert second.metadata["condense"] == "ok"
    assert second.metadata["condensed_question"] == "When is glass collected for recycling in Harbor Town?"
    assert second.original_query == "When is glass collected there?"
    condense_call = llm.calls[-2]
    assert "Which town is this about?" in condense_call.prompt  # the history went into the condense prompt
    assert "Harbor Town?" in llm.calls[-1].prompt  # and the condensed question was answered
    assert [t.question for t in chat.turns] == ["Which town is this about?", "When is glass collected there?"]
    chat.reset()
    assert not chat.turns
    # The one-shot form takes the history as OpenAI-style messages.
    again = rag.chat(
        "When is glass collected there?",
        [{"role": "user", "content": "Which town?"}, {"role": "assistant", "content": "Harbor Town."}],
    )
    assert again.metadata["condensed_question"].endswith("Harbor Town?")
    rag.close()


def test_a_condense_failure_that_is_not_retryable_surfaces(store_dir: Path) -> None:
    class Unauthorized(ScriptedLLM):
        async def complete(self, messages: Any, **options: Any) -> Any:
            raise AuthenticationError("invalid api key")

    rag = AgenticRAG(
        VectorStore(str(store_dir), collection_name="docs"), EmbeddingModel(), llm=Unauthorized([])
    )
    with pytest.raises(AuthenticationError):
        rag.chat("And there?", [("Which town?", "Harbor Town.")])
    rag.close()


def test_chat_completions_uses_earlier_messages_as_history_and_honours_the_system_message(
    store_dir: Path,
) -> None:
    llm = scripted("When is glass collected for recycling in Harbor Town?")
    rag = chatty_rag(store_dir, llm)
    messages = [
        {"role": "system", "content": "Answer in one short sentence."},
        {"role": "user", "content": "Which town is this about?"},
        {"role": "assistant", "content": "Harbor Town."},
        {"role": "user", "content": "When is glass collected there?"},
    ]
    with ServerThread(create_app(rag, settings=ServerSettings())) as running:
        body = {"messages": messages, "top_k": 3}
        completion = httpx.post(f"{running.url}/v1/chat/completions", json=body, timeout=60).json()
        assert running.loop is not None
        asyncio.run_coroutine_threadsafe(rag.aclose(), running.loop).result(timeout=10)
    assert completion["choices"][0]["message"]["content"].endswith("[1].")
    condense, answer = llm.calls[-2], llm.calls[-1]
    assert "Which town is this about?" in condense.prompt and "Harbor Town." in condense.prompt
    assert "Harbor Town?" in answer.prompt
    assert "Answer in one short sentence." in answer.messages[0]["content"]
    assert len(completion["sources"]) <= 3


def test_the_facade_lists_and_deletes_documents(tmp_path: Path) -> None:
    rag = AgenticRAG(VectorStore(str(tmp_path / "store"), collection_name="docs"), EmbeddingModel())
    assert rag.index_documents([SAMPLE_CORPUS]).ok
    listed = rag.list_documents()
    jsonl = [d for d in listed if d.source.endswith(".jsonl")]
    assert jsonl and jsonl[0].chunks > 1  # its rows are one document
    before = rag.vector_store.count()
    report = rag.delete_documents([jsonl[0].source])
    assert report.chunks == jsonl[0].chunks
    assert rag.vector_store.count() == before - jsonl[0].chunks
    assert jsonl[0].source not in {d.source for d in rag.list_documents()}
    rag.close()


def test_the_library_reads_the_same_settings_as_the_cli(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mini.llms.base import resolve_llm_config

    monkeypatch.chdir(tmp_path)  # no mini.toml or .env from elsewhere
    (tmp_path / "mini.toml").write_text('retrieval_mode = "dense"\nreranker = "none"\n')
    monkeypatch.setenv("MINI_TOP_K", "3")
    monkeypatch.setenv("MINI_LLM", "openai:sim-chat")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("MINI_LLM_TIMEOUT", "7.5")
    rag = AgenticRAG(VectorStore(str(tmp_path / "store")), EmbeddingModel())
    assert (rag.retrieval_config.top_k, rag.retrieval_config.retrieval_mode) == (3, "dense")
    config = resolve_llm_config(None)
    assert config is not None and (config.model, config.timeout) == ("openai:sim-chat", 7.5)
    monkeypatch.setenv("MINI_LLM", "none")
    assert resolve_llm_config(None) is None


def test_a_bad_filter_or_mode_is_refused_before_any_model_call(store_dir: Path) -> None:
    llm = scripted("unused")
    rag = AgenticRAG(VectorStore(str(store_dir), collection_name="docs"), EmbeddingModel(), llm=llm)
    with pytest.raises(InvalidInputError, match="operator"):
        rag.query(QUESTION, filter={"year": {"$near": 3}})
    with pytest.raises(InvalidInputError, match="mode"):
        rag.stream_async(QUESTION, mode="semantic")  # raises when called, before the stream starts
    with pytest.raises(InvalidInputError):
        rag.chat("And there?", [("Which town?", "Harbor Town.")], filter={"$or": "x"})
    assert llm.calls == []  # no rewrite or condense was paid for
    rag.close()
