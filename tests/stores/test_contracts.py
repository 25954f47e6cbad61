"""The store contract (`mini.testing.contracts`) over every backend: LanceDB, Milvus Lite and Qdrant local mode
always; real Milvus and Qdrant servers when `MINI_TEST_MILVUS_URI` / `MINI_TEST_QDRANT_URL` name them
(tokens in `MINI_TEST_MILVUS_TOKEN` / `MINI_TEST_QDRANT_API_KEY`)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from mini.stores.base import VectorStoreBackend, create_backend
from mini.testing.contracts import CONTRACT_CHECKS, Check, check_keyword_search


def _local_uri(kind: str, root: Path) -> str:
    if kind == "lancedb":
        return str(root / "lance")
    if kind == "milvus-lite":
        return str(root / "milvus.db")
    return f"qdrant+path://{root / 'qdrant'}"


BACKENDS: list[Any] = ["lancedb", "milvus-lite", "qdrant-local"]
if os.environ.get("MINI_TEST_MILVUS_URI"):
    BACKENDS.append(pytest.param("milvus-server", marks=pytest.mark.integration))
if os.environ.get("MINI_TEST_QDRANT_URL"):
    BACKENDS.append(pytest.param("qdrant-server", marks=pytest.mark.integration))


@pytest.fixture(params=BACKENDS)
async def make(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[..., VectorStoreBackend]]:
    kind: str = request.param
    if kind.endswith("-server"):
        # A shared server: unique collection names per test, dropped afterwards.
        uri = os.environ["MINI_TEST_MILVUS_URI" if kind == "milvus-server" else "MINI_TEST_QDRANT_URL"]
        token = os.environ.get(
            "MINI_TEST_MILVUS_TOKEN" if kind == "milvus-server" else "MINI_TEST_QDRANT_API_KEY"
        )
        prefix = f"mini_test_{uuid.uuid4().hex[:8]}_"
    else:
        uri, token, prefix = _local_uri(kind, tmp_path), None, ""
    made: list[VectorStoreBackend] = []

    def factory(name: str = "c", dimension: int | None = None) -> VectorStoreBackend:
        backend = create_backend(uri, collection_name=prefix + name, dimension=dimension, token=token)
        made.append(backend)
        return backend

    yield factory
    if prefix:
        for backend in made:
            await backend.drop()
    for backend in made:
        await backend.aclose()


@pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_store_contract(check: Check, make: Callable[..., VectorStoreBackend]) -> None:
    await check(make)


async def test_keyword_search_contract(make: Callable[..., VectorStoreBackend]) -> None:
    if not make("probe").supports_hybrid:
        pytest.skip("this backend has no keyword search (supports_hybrid is False)")
    await check_keyword_search(make)
