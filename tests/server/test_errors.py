"""Library errors reach HTTP clients with the status and type of their class in `mini.errors`' tree."""

from __future__ import annotations

import asyncio
import inspect
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mini import AgenticRAG, EmbeddingModel, VectorStore, errors
from mini.server import ServerSettings, create_app
from mini.server.errors import STATUS_BY_ERROR, install, public_error, status_for
from mini.testing.server_thread import ServerThread
from tests.conftest import SAMPLE_CORPUS
from tests.query.conftest import SIM_KEY

TREE = [cls for _, cls in inspect.getmembers(errors, inspect.isclass) if issubclass(cls, errors.MiniError)]


def sample(cls: type[errors.MiniError]) -> errors.MiniError:
    """An instance of `cls`, whatever its constructor needs."""
    if issubclass(cls, errors.DimensionMismatchError):
        return cls(384, 256)
    if issubclass(cls, errors.DuplicateIdError):
        return cls(["a"])
    if issubclass(cls, errors.DocumentError):
        return cls("a.txt", "unreadable")
    if issubclass(cls, errors.BudgetExceededError):
        return cls("turns", "out of turns")
    if issubclass(cls, errors.MissingDependencyError):
        return cls("parsing PDFs", "pdf")
    return cls("went wrong")


def test_every_class_of_the_tree_has_its_own_mapping() -> None:
    assert len(TREE) > 20
    assert set(TREE) == set(STATUS_BY_ERROR)


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (errors.DimensionMismatchError, (500, "store_error")),
        (errors.StoreError, (500, "store_error")),
        (errors.DuplicateIdError, (409, "conflict")),
        (errors.UnsupportedOperationError, (501, "unsupported_operation")),
        (errors.UnsupportedFilterError, (422, "invalid_input")),
        (errors.ProviderTimeoutError, (504, "provider_timeout")),
        (errors.RateLimitError, (429, "rate_limited")),
        (errors.AuthenticationError, (502, "provider_rejected")),
        (errors.UsageError, (500, "internal_error")),
    ],
)
def test_status_follows_the_class_not_its_name(
    cls: type[errors.MiniError], expected: tuple[int, str]
) -> None:
    assert status_for(sample(cls)) == expected


def test_a_subclass_outside_the_table_gets_its_parents_mapping() -> None:
    class StoreHiccup(errors.DuplicateIdError):
        pass

    class Something(errors.MiniError):
        pass

    assert status_for(StoreHiccup(["x"])) == (409, "conflict")
    assert status_for(Something()) == (500, "internal_error")
    assert status_for(RuntimeError("bug")) == (500, "internal_error")


@pytest.mark.parametrize("cls", TREE, ids=lambda cls: cls.__name__)
async def test_each_error_reaches_the_client_with_its_status_and_type(cls: type[errors.MiniError]) -> None:
    app = FastAPI()
    install(app)
    raised = sample(cls)

    @app.get("/boom")
    async def boom() -> None:
        raise raised

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        response = await client.get("/boom")
    status, kind = STATUS_BY_ERROR[cls]
    assert (response.status_code, response.json()["type"]) == (status, kind)
    # Our own words about the client's input reach it; any other message stays in the server log.
    own = kind in {"invalid_input", "conflict", "document_error"}
    assert (response.json()["message"] == str(raised)) is own
    assert response.json()["message"] == public_error(raised)[2]


def test_a_dimension_mismatch_in_the_store_is_a_store_error_and_its_details_are_logged(
    sim: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def rag(dimension: int) -> AgenticRAG:
        return AgenticRAG(
            VectorStore(str(tmp_path), collection_name="sim"),
            EmbeddingModel("openai:sim-embed", base_url=sim.base_url, api_key=SIM_KEY, dimension=dimension),
        )

    indexer = rag(384)
    assert indexer.index_documents([SAMPLE_CORPUS]).ok
    indexer.close()
    mismatched = rag(256)  # the server's embedding model no longer fits the collection it serves
    with (
        caplog.at_level(logging.WARNING, logger="mini.server"),
        ServerThread(create_app(mismatched, settings=ServerSettings())) as server,
    ):
        response = httpx.post(
            f"{server.url}/v1/query", json={"question": "What goes in the blue bin?"}, timeout=30
        )
        assert server.loop is not None
        asyncio.run_coroutine_threadsafe(mismatched.aclose(), server.loop).result(timeout=10)
    assert response.status_code == 500
    assert response.json() == {
        "type": "store_error",
        "message": "the vector store failed (see the server log)",
    }
    # The details went to the log, once, at warning level.
    [logged] = [r.getMessage() for r in caplog.records if "POST /v1/query" in r.getMessage()]
    assert "DimensionMismatchError" in logged and "dimension 256" in logged
