"""Hybrid retrieval offline: dense + BM25 legs at once over the embedded store, fused by rank; the prefilter leg;
optional legs degrading and the dense leg failing loudly."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from mini import AgenticRAG, EmbeddingModel, RetrievalConfig, VectorStore
from mini.errors import StoreError, UnsupportedOperationError
from mini.query.retrieval import question_phrases
from mini.stores.filters import Filter
from mini.stores.lancedb import LanceDBBackend
from mini.types import RetrievalResult

TEXTS = [
    "Part ZX-4471 is the replacement hinge for the north gate; order it from the depot.",
    "The garden gate was painted green last spring by volunteers.",
    "Gates and fences in the park are inspected every autumn.",
    "The library opens at nine on weekdays and at ten on Saturdays.",
    "Compost bins are collected on the second Monday of each month.",
]
PRODUCTS = ["Acme Pro X", "", "", "Reading Room", ""]


class SlowLegs:
    """The real LanceDB backend with a delay in front of dense and keyword searches (and optional failures).

    With `meet=True` each leg waits until the other has started: the query completes only if the two run
    concurrently, whatever the machine's speed (run one after the other, the first leg would time out)."""

    def __init__(
        self, inner: LanceDBBackend, *, dense: float = 0.0, keyword: float = 0.0, meet: bool = False
    ) -> None:
        self.inner, self.dense_delay, self.keyword_delay = inner, dense, keyword
        self.fail_keyword = self.fail_dense = False
        self.keyword_cancelled = False
        self.meet = meet
        self.dense_started, self.keyword_started = asyncio.Event(), asyncio.Event()

    async def _meet(self, mine: asyncio.Event, other: asyncio.Event) -> None:
        mine.set()
        if self.meet:
            await asyncio.wait_for(other.wait(), timeout=30)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    supports_hybrid = True

    async def search_many(
        self, vectors: Sequence[Sequence[float]], *, top_k: int, filter: Filter | None = None
    ) -> list[list[RetrievalResult]]:
        await self._meet(self.dense_started, self.keyword_started)
        await asyncio.sleep(self.dense_delay)
        if self.fail_dense:
            raise StoreError("dense search is down")
        return await self.inner.search_many(vectors, top_k=top_k, filter=filter)

    async def keyword_search(
        self, text: str, *, top_k: int, filter: Filter | None = None
    ) -> list[RetrievalResult]:
        try:
            await self._meet(self.keyword_started, self.dense_started)
            await asyncio.sleep(self.keyword_delay)
        except asyncio.CancelledError:
            self.keyword_cancelled = True
            raise
        if self.fail_keyword:
            raise StoreError("full-text index is corrupt")
        return await self.inner.keyword_search(text, top_k=top_k, filter=filter)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hybrid_store")
    store = VectorStore(str(path), collection_name="h")
    model = EmbeddingModel()
    metadata = [{"source": f"doc{i}.txt", **({"product": p} if p else {})} for i, p in enumerate(PRODUCTS)]
    store.upsert(model.embed_chunks(TEXTS), TEXTS, metadata)
    store.close()
    return path


def make_rag(store_dir: Path, backend: Any = None, **config: Any) -> AgenticRAG:
    store = VectorStore(backend=backend or LanceDBBackend(str(store_dir), collection_name="h"))
    return AgenticRAG(store, EmbeddingModel(), retrieval_config=RetrievalConfig(**{"top_k": 5, **config}))


async def test_keyword_leg_finds_an_exact_identifier_and_hybrid_keeps_it(store_dir: Path) -> None:
    keyword = await make_rag(store_dir, retrieval_mode="keyword").retrieve_async("ZX-4471")
    assert keyword[0].text.startswith("Part ZX-4471")
    assert all("ZX" in hit.text for hit in keyword)  # BM25 returns only rows that match a query term
    hybrid_rag = make_rag(store_dir)
    response = await hybrid_rag.query_async("ZX-4471")
    assert response.retrieved_chunks[0].text.startswith("Part ZX-4471")
    retrieval = response.metadata["retrieval"]
    assert retrieval["mode"] == "hybrid" and set(retrieval["legs"]) == {"dense", "keyword"}
    assert "warnings" not in response.metadata


async def test_hybrid_legs_run_concurrently_so_retrieval_takes_the_longest_leg_not_the_sum(
    store_dir: Path,
) -> None:
    # The legs meet (each waits for the other to start): concurrency is proven by the query completing, not
    # by comparing durations, which a loaded machine stretches.
    backend = SlowLegs(LanceDBBackend(str(store_dir), collection_name="h"), dense=0.3, keyword=0.4, meet=True)
    response = await make_rag(store_dir, backend).query_async("when does the library open")
    assert "warnings" not in response.metadata  # neither leg timed out waiting for the other
    retrieval, timings = response.metadata["retrieval"], response.metadata["timings_ms"]
    dense_ms, keyword_ms = retrieval["legs"]["dense"]["ms"], retrieval["legs"]["keyword"]["ms"]
    assert dense_ms >= 300 and keyword_ms >= 400
    assert retrieval["wall_ms"] >= max(dense_ms, keyword_ms)
    assert timings["embed"] + timings["search"] == pytest.approx(retrieval["wall_ms"], abs=1.0)


async def test_a_failing_keyword_leg_degrades_to_dense_with_a_warning(store_dir: Path) -> None:
    backend = SlowLegs(LanceDBBackend(str(store_dir), collection_name="h"))
    backend.fail_keyword = True
    response = await make_rag(store_dir, backend).query_async("when does the library open")
    assert response.retrieved_chunks and "library" in response.retrieved_chunks[0].text
    assert any("keyword retrieval failed" in w for w in response.metadata["warnings"])
    assert "corrupt" in response.metadata["retrieval"]["legs"]["keyword"]["error"]


async def test_a_failing_dense_leg_raises_and_cancels_the_keyword_leg(store_dir: Path) -> None:
    # The keyword leg would take an hour: the query returns only because the failing dense leg cancels it.
    backend = SlowLegs(LanceDBBackend(str(store_dir), collection_name="h"), keyword=3600.0)
    backend.fail_dense = True
    with pytest.raises(StoreError, match="dense search is down"):
        await asyncio.wait_for(make_rag(store_dir, backend).query_async("library"), timeout=60)
    assert backend.keyword_cancelled


async def test_a_store_without_keyword_search_falls_back_to_dense_or_refuses_keyword_mode(
    store_dir: Path,
) -> None:
    class DenseOnly(SlowLegs):
        supports_hybrid = False

    backend = DenseOnly(LanceDBBackend(str(store_dir), collection_name="h"))
    response = await make_rag(store_dir, backend).query_async("library hours")
    assert response.retrieved_chunks
    assert any("no keyword search" in w for w in response.metadata["warnings"])
    assert set(response.metadata["retrieval"]["legs"]) == {"dense"}
    with pytest.raises(UnsupportedOperationError, match="keyword"):
        await make_rag(store_dir, backend, retrieval_mode="keyword").retrieve_async("library")


async def test_the_prefilter_leg_adds_rows_whose_metadata_field_equals_a_phrase_of_the_question(
    store_dir: Path,
) -> None:
    question = "library opening hours for Acme Pro X owners"
    options: dict[str, Any] = {"retrieval_mode": "dense", "top_k": 2, "candidates_per_leg": 0}
    plain = await make_rag(store_dir, **options).retrieve_async(question)
    prefiltered_rag = make_rag(store_dir, **options, prefilter_field="product")
    response = await prefiltered_rag.query_async(question)
    assert response.metadata["retrieval"]["legs"]["prefilter"]["hits"] == 1
    (acme,) = await prefiltered_rag.vector_store.get_async(filter={"product": "Acme Pro X"})
    assert acme.id not in [hit.id for hit in plain]  # dense alone misses it...
    assert acme.id in [hit.id for hit in response.retrieved_chunks]  # ...the exact match brings it in


def test_question_phrases_are_ngrams_as_written_and_lowercased() -> None:
    phrases = question_phrases("Does the Acme Pro X fit?")
    assert "Acme Pro X" in phrases and "acme pro x" in phrases and "fit" in phrases
    assert phrases.index("Does the Acme Pro") < phrases.index("Acme Pro X")  # longest first
    assert question_phrases("   ") == []


async def test_keyword_search_on_the_facade_validates_input(store_dir: Path) -> None:
    store = VectorStore(str(store_dir), collection_name="h")
    assert await store.keyword_search_async("   ") == []
    hits = await store.keyword_search_async("gate", top_k=2, filter={"source": "doc1.txt"})
    assert [hit.source for hit in hits] == ["doc1.txt"]
    with pytest.raises(ValueError, match="top_k"):
        await store.keyword_search_async("gate", top_k=0)
