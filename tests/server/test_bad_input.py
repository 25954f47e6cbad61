"""Bad input gets a clean 4xx before any work, and no error body carries internals: text that is not usable as
text (lone surrogates, NUL) anywhere in a JSON body, filters beyond their limits, store and provider failures."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mini import AgenticRAG, EmbeddingModel, LLMConfig, VectorStore
from mini._sse import decode
from mini.errors import StoreError
from mini.server.schemas import unusable_text
from mini.testing.server_thread import ServerThread
from tests.conftest import reset_sim
from tests.servers import indexed_rag, serve

QUESTION = "When is glass collected for recycling?"
SURROGATE = "glass \ud800 bin"  # json.dumps writes it as the escape "\\ud800", as the reported client did
NUL = "glass \x00 bin"
STREAMS = ("/v1/query/stream", "/v1/chat/stream", "/v1/agent/stream")


@pytest.fixture(scope="module")
def rag(sim_server: Any, tmp_path_factory: pytest.TempPathFactory) -> AgenticRAG:
    reset_sim(sim_server)
    return indexed_rag(sim_server, tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def server(rag: AgenticRAG) -> Iterator[ServerThread]:
    # One server for the module: every request here is refused before it does anything (or fails at once).
    with serve(rag) as running:
        yield running


def post(server: ServerThread, path: str, body: Any) -> httpx.Response:
    """POST `body` as JSON exactly as `json.dumps` writes it (lone surrogates as `\\ud800` escapes)."""
    content = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    return httpx.post(server.url + path, content=content, headers=headers, timeout=30)


def provider_requests(sim: Any) -> int:
    return int(sim.stats()["total"]["requests"])


def chat_completion(content: Any, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": content}], **extra}


# -- unusable text -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        pytest.param("/v1/query", {"question": SURROGATE}, "question", id="query"),
        pytest.param("/v1/query/stream", {"question": SURROGATE}, "question", id="query-stream"),
        pytest.param("/v1/query", {"question": NUL}, "question", id="query-nul"),
        pytest.param(
            "/v1/query",
            {"question": QUESTION, "filter": {"lang": SURROGATE}},
            "filter.lang",
            id="filter-value",
        ),
        pytest.param(
            "/v1/query",
            {"question": QUESTION, "filter": {SURROGATE: "en"}},
            "a key of filter",
            id="filter-key",
        ),
        pytest.param(
            "/v1/chat/completions", chat_completion(SURROGATE), "messages.0.content", id="completions"
        ),
        pytest.param(
            "/v1/chat/completions",
            chat_completion(SURROGATE, stream=True),
            "messages.0.content",
            id="completions-stream",
        ),
        pytest.param(
            "/v1/chat/completions",
            chat_completion([{"type": "text", "text": QUESTION}, {"type": "text", "text": NUL}]),
            "messages.0.content.1.text",
            id="completions-content-part",
        ),
        pytest.param(
            "/v1/chat/completions",
            {"messages": [{"role": "system", "content": SURROGATE}, {"role": "user", "content": QUESTION}]},
            "messages.0.content",
            id="completions-instructions",
        ),
        pytest.param("/v1/chat/stream", {"message": SURROGATE}, "message", id="chat"),
        pytest.param("/v1/agent/stream", {"question": SURROGATE}, "question", id="agent"),
        pytest.param("/v1/documents", {"texts": [{"text": NUL}]}, "texts.0.text", id="document-text"),
        pytest.param(
            "/v1/documents",
            {"texts": [{"text": QUESTION, "metadata": {"lang": NUL}}]},
            "texts.0.metadata.lang",
            id="document-metadata",
        ),
    ],
)
def test_text_that_is_not_text_is_a_422_naming_the_field_before_any_provider_call(
    server: ServerThread, sim: Any, path: str, body: dict[str, Any], field: str
) -> None:
    response = post(server, path, body)
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "invalid_request"
    message = response.json()["message"]
    assert message.startswith(field + " contains "), message
    assert "surrogate" in message or "NUL" in message
    assert provider_requests(sim) == 0


def test_a_lone_surrogate_in_a_document_is_refused_before_a_job_starts(
    server: ServerThread, sim: Any
) -> None:
    # The documents route parses its JSON with pydantic's own parser, which refuses the escape itself (as
    # "Invalid JSON: unexpected end of hex escape"), before the body's check could name the field.
    response = post(server, "/v1/documents", {"texts": [{"text": SURROGATE, "source": "a.md"}]})
    assert response.status_code == 422 and response.json()["type"] == "invalid_request"
    assert "Invalid JSON" in response.json()["message"]
    assert provider_requests(sim) == 0


def test_the_text_check_walks_every_key_and_value_in_document_order() -> None:
    assert unusable_text({"question": "ok", "filter": {"a": ["x", {"b": 1.5}]}, "n": None}) is None
    body = {"messages": [{"content": "fine"}, {"content": ["a", NUL]}], "later": SURROGATE}
    assert unusable_text(body) == "messages.1.content.1 contains a NUL character at position 6"
    assert unusable_text({"a": {NUL: 1}}) == "a key of a contains a NUL character at position 6"
    assert unusable_text(SURROGATE) == (
        "the body contains a lone surrogate (U+D800), which is not valid Unicode at position 6"
    )
    deep: Any = NUL
    for _ in range(50_000):  # no recursion: a deep body cannot exhaust the stack
        deep = [deep]
    assert unusable_text(deep) == ".".join(["0"] * 50_000) + " contains a NUL character at position 6"


# -- filters -----------------------------------------------------------------------------------------------------


def nested_filter(levels: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"source": "a.md"}
    for _ in range(levels - 1):
        spec = {"$and": [spec]}
    return spec


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/query", {"question": QUESTION}),
        ("/v1/query/stream", {"question": QUESTION}),
        ("/v1/chat/stream", {"message": QUESTION}),
        ("/v1/chat/completions", chat_completion(QUESTION)),
        ("/v1/chat/completions", chat_completion(QUESTION, stream=True)),
    ],
)
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(nested_filter(60), "nested more than 8 levels", id="nested-60"),
        pytest.param({"$or": [{"n": i} for i in range(101)]}, "more than 100 conditions", id="wide"),
        pytest.param({"n": {"$regex": ".*"}}, "unknown filter operator '$regex'", id="operator"),
    ],
)
def test_a_bad_filter_is_a_422_before_any_provider_call_and_shows_no_sql(
    server: ServerThread,
    sim: Any,
    path: str,
    body: dict[str, Any],
    spec: dict[str, Any],
    expected: str,
) -> None:
    response = post(server, path, {**body, "filter": spec})
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "invalid_input"
    assert expected in response.json()["message"]
    assert "SELECT" not in response.text and "WHERE" not in response.text
    assert provider_requests(sim) == 0  # no rewrite, no embedding: the filter was checked first


def test_a_bad_filter_on_a_chat_turn_makes_no_session(server: ServerThread, sim: Any) -> None:
    body = {"message": QUESTION, "session_id": "bad-filter", "filter": {"n": {"$regex": "x"}}}
    assert post(server, "/v1/chat/stream", body).status_code == 422
    assert httpx.get(server.url + "/v1/sessions/bad-filter", timeout=30).status_code == 404


# -- errors without internals ------------------------------------------------------------------------------------


def unreachable_url() -> str:
    """A loopback URL where nothing listens (the port was just free)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_a_provider_failure_names_no_upstream_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base_url = unreachable_url()
    rag = AgenticRAG(
        VectorStore(str(tmp_path), collection_name="down"),
        EmbeddingModel("openai:e", base_url=base_url, api_key="k", dimension=8, max_retries=0),
        llm_config=LLMConfig(model="m", base_url=base_url, api_key="k", max_retries=0),
    )
    address = base_url.removeprefix("http://").removesuffix("/v1")
    with caplog.at_level(logging.WARNING, logger="mini"), serve(rag) as server:
        answered = post(server, "/v1/query", {"question": QUESTION})
        with httpx.stream(
            "POST", server.url + "/v1/query/stream", json={"question": QUESTION}, timeout=30
        ) as response:
            [event] = [e for e in decode(response.iter_bytes()) if e.event == "error"]
    assert answered.status_code == 502
    public = {"type": "provider_error", "message": "the model provider failed (see the server log)"}
    assert answered.json() == public and event.json() == public
    assert address not in answered.text and address not in event.data
    # The address is the log's, for whoever runs the server.
    assert address in caplog.text


def test_a_store_failure_shows_no_sql_to_the_client_and_logs_it(
    rag: AgenticRAG,
    server: ServerThread,
    sim: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sql = "LanceDB search failed: Error parsing statement: SELECT 1 FROM t WHERE ((source = 'x'))"

    async def failing(*args: Any, **kwargs: Any) -> Any:
        raise StoreError(sql)

    monkeypatch.setattr(rag.vector_store, "search_many_async", failing)
    monkeypatch.setattr(rag.vector_store, "keyword_search_async", failing)
    with caplog.at_level(logging.WARNING, logger="mini"):
        answered = post(server, "/v1/query", {"question": QUESTION})
        with httpx.stream(
            "POST", server.url + "/v1/query/stream", json={"question": QUESTION}, timeout=30
        ) as response:
            [event] = [e for e in decode(response.iter_bytes()) if e.event == "error"]
    public = {"type": "store_error", "message": "the vector store failed (see the server log)"}
    assert answered.status_code == 500 and answered.json() == public
    assert event.json() == public
    assert sql in caplog.text
