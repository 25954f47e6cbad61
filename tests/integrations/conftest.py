"""A small store indexed offline (local model, LanceDB in a temporary directory), one per test module."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mini import AgenticRAG, EmbeddingModel, VectorStore

COLLECTION = "integrations"
GLASS_QUESTION = "When is glass collected for recycling?"
GLASS_ANSWER = "first Wednesday of every month"
TEXTS = {
    "recycling.md": f"Glass is collected for recycling on the {GLASS_ANSWER}. Paper goes out every Friday.",
    "library.md": "The town library opens at 9 am on weekdays and its 2025 budget is $1.2 million.",
    "parks.md": "Dogs must be kept on a leash in every town park, and the parks close at sunset.",
}


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("integrations_store")


@pytest.fixture(scope="module")
def rag(store_dir: Path) -> Iterator[AgenticRAG]:
    """Indexed with the sync facade (portal loop); tests use it from their own loop, as the facade allows."""
    rag = AgenticRAG(VectorStore(str(store_dir), collection_name=COLLECTION), EmbeddingModel())
    report = rag.index_texts(list(TEXTS.values()), sources=list(TEXTS))
    assert report.ok and report.chunks_added == len(TEXTS), report.failures
    yield rag
    rag.close()


@pytest.fixture
def search_calls(
    rag: AgenticRAG, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[asyncio.AbstractEventLoop, threading.Thread]]:
    """Where each `rag.search_async` call ran (its loop and thread): an async retriever must await it on the
    caller's loop, not hop to a thread."""
    seen: list[tuple[asyncio.AbstractEventLoop, threading.Thread]] = []
    search_async = rag.search_async

    async def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append((asyncio.get_running_loop(), threading.current_thread()))
        return await search_async(*args, **kwargs)

    monkeypatch.setattr(rag, "search_async", spy)
    return seen
