"""QdrantBackend.keyword_search in local mode (in memory and on disk): BM25 ranking with our tokenizer and
Qdrant's IDF, stemming, filters, limits, and collections made before keyword search. The server code path
runs `check_keyword_search` against the fake REST server in test_qdrant.py."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from mini.errors import InvalidInputError, UnsupportedFilterError, UnsupportedOperationError
from mini.stores import qdrant
from mini.stores.base import Record, VectorStore
from mini.stores.filters import Compare, matches, parse_filter
from mini.stores.qdrant import QdrantBackend
from mini.stores.qdrant import _points as points
from mini.stores.qdrant_filters import ID_KEY, METADATA_KEY, TEXT_KEY, point_id
from mini.stores.sparse import document_vector, term_index
from mini.testing.contracts import unit
from tests.stores.keyword_corpus import CORPUS

Factory = Callable[..., QdrantBackend]


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Factory]:
    made: list[QdrantBackend] = []

    def factory(uri: str = ":memory:", name: str = "t", **kwargs: Any) -> QdrantBackend:
        made.append(QdrantBackend(uri, collection_name=name, **kwargs))
        return made[-1]

    yield factory
    for backend in made:
        await backend.aclose()


async def corpus(backend: QdrantBackend) -> QdrantBackend:
    await backend.insert([Record(i, unit(n), text, meta) for n, (i, text, meta) in enumerate(CORPUS)])
    return backend


def ids(hits: list[Any]) -> list[str]:
    return [h.id for h in hits]


async def test_a_rare_term_twice_ranks_first_and_scores_fall(make: Factory) -> None:
    backend = await corpus(make())
    hits = await backend.keyword_search("quokka", top_k=10)
    assert ids(hits) == ["d0", "d1"]
    assert hits[0].score > hits[1].score > 0
    assert (hits[0].text, hits[0].metadata) == (CORPUS[0][1], CORPUS[0][2])
    # Two query terms: the row holding both beats rows holding one.
    assert ids(await backend.keyword_search("quokka island", top_k=10))[0] == "d1"


async def test_scores_are_bm25_with_qdrants_idf(make: Factory) -> None:
    backend = await corpus(make())
    hits = {h.id: h.score for h in await backend.keyword_search("quokka island", top_k=10)}
    with_terms = sum(1 for _, text, _ in CORPUS if document_vector(text))  # IDF counts rows with terms
    expected = {}
    for id_, text, _ in CORPUS:
        vector = document_vector(text)
        weights = dict(zip(vector.indices, vector.values, strict=True))
        score = 0.0
        for term in ("quokka", "island"):
            df = sum(1 for _, t, _ in CORPUS if term_index(term) in document_vector(t).indices)
            idf = math.log((with_terms - df + 0.5) / (df + 0.5) + 1)
            score += idf * weights.get(term_index(term), 0.0)
        if score:
            expected[id_] = score
    assert hits == pytest.approx(expected, rel=1e-5)


async def test_inflections_match_through_the_stemmer(make: Factory) -> None:
    backend = await corpus(make())
    assert set(ids(await backend.keyword_search("running", top_k=10))) == {"d2", "d3"}  # "runs", "Running"
    assert set(ids(await backend.keyword_search("RUN", top_k=10))) == {"d2", "d3"}
    assert ids(await backend.keyword_search("quokkas", top_k=10)) == ["d0", "d1"]


async def test_no_matching_term_stop_words_only_and_top_k(make: Factory) -> None:
    backend = await corpus(make())
    assert await backend.keyword_search("xylophone", top_k=5) == []
    assert await backend.keyword_search("the and of", top_k=5) == []  # no terms: nothing matches
    assert await backend.keyword_search("!!!", top_k=5) == []
    assert ids(await backend.keyword_search("quokka", top_k=1)) == ["d0"]
    everything = await backend.keyword_search("quokka island council parks budget", top_k=10)
    assert set(ids(everything)) == {"d0", "d1", "d2", "d3", "d4"}
    assert len(await backend.keyword_search("quokka island council parks budget", top_k=3)) == 3
    with pytest.raises(InvalidInputError):
        await backend.keyword_search("quokka", top_k=0)
    with pytest.raises(InvalidInputError):
        await backend.keyword_search(b"quokka", top_k=1)  # type: ignore[arg-type]


async def test_filters_apply_as_in_dense_search(make: Factory) -> None:
    backend = await corpus(make())
    query = "quokka island council parks budget"
    unfiltered = await backend.keyword_search(query, top_k=10)
    for spec in (
        {"source": "travel.md"},
        {"source": {"$ne": "travel.md"}},
        {"year": {"$gte": 2021, "$lt": 2024}},
        {"year": {"$in": [2020, 2024]}},
        {"id": {"$in": ["d0", "d3"]}},
        {"$or": [{"source": "animals.md"}, {"year": 2023}]},
        {"missing": "x"},
    ):
        parsed = parse_filter(spec)
        got = await backend.keyword_search(query, top_k=10, filter=parsed)
        expected = [h.id for h in unfiltered if matches(parsed, {**h.metadata, "id": h.id})]
        assert ids(got) == expected, spec  # same order: Qdrant's IDF is collection-wide, filter or not
        dense = await backend.search(unit(0), top_k=10, filter=parsed)
        assert set(ids(got)) <= set(ids(dense)), spec
    with pytest.raises(UnsupportedFilterError):
        await backend.keyword_search("quokka", top_k=3, filter=parse_filter({"source": {"$gt": "a"}}))


async def test_writes_update_the_terms(make: Factory) -> None:
    backend = await corpus(make())
    await backend.upsert([Record("d4", unit(4), "A quokka on the ferry", {"source": "travel.md"})])
    assert ids(await backend.keyword_search("budget", top_k=5)) == []
    assert set(ids(await backend.keyword_search("quokka", top_k=5))) == {"d0", "d1", "d4"}
    assert await backend.delete(ids=["d0"]) == 1
    assert set(ids(await backend.keyword_search("quokka", top_k=5))) == {"d1", "d4"}
    await backend.replace([], scope=Compare("source", "eq", "travel.md"))
    assert await backend.keyword_search("quokka", top_k=5) == []


async def test_missing_collection_answers_empty_and_creates_nothing(tmp_path: Path, make: Factory) -> None:
    backend = make(f"qdrant+path://{tmp_path / 'q'}")
    assert await backend.keyword_search("quokka", top_k=3) == []
    assert backend.dimension is None
    await backend.drop()


async def test_keyword_search_survives_reopening_on_disk(tmp_path: Path, make: Factory) -> None:
    uri = f"qdrant+path://{tmp_path / 'q'}"
    first = await corpus(make(uri))
    before = await first.keyword_search("quokka island", top_k=5)
    await first.aclose()
    again = make(uri)
    after = await again.keyword_search("quokka island", top_k=5)
    assert ids(after) == ids(before)
    assert [h.score for h in after] == pytest.approx([h.score for h in before])


async def test_big_batches_get_their_terms_in_a_worker_thread(
    make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []

    def spy(records: Any) -> Any:
        threads.append(threading.get_ident())
        return points(records)

    monkeypatch.setattr(qdrant, "_points", spy)
    backend = make()
    text = "quokka " + "filler words about the island " * 40  # ~1,200 characters: 40 rows pass the threshold
    await backend.upsert([Record(f"b{i}", unit(i), text if i else "only the quokka", {}) for i in range(40)])
    await backend.upsert([Record("small", unit(0), "quokka", {})])  # a few characters: on the loop
    assert threads[0] != threading.get_ident() and threads[1] == threading.get_ident()
    await backend.delete(ids=["small"])
    hits = await backend.keyword_search("quokka", top_k=3)
    assert hits[0].id == "b0"  # the short row: same term, shorter text
    assert len(hits) == 3


async def test_concurrent_keyword_searches_share_calls(make: Factory) -> None:
    backend = await corpus(make())
    queries = ["quokka", "council", "parks", "budget"] * 8
    before = backend._searches.batches
    results = await asyncio.gather(*(backend.keyword_search(q, top_k=2) for q in queries))
    assert [r[0].id for r in results[:4]] == ["d0", "d2", "d3", "d4"]
    assert backend._searches.batches - before < len(queries) / 4


def _old_collection(path: Path) -> None:
    """A collection as this backend made it before keyword search: one unnamed dense vector, no sparse."""
    client = QdrantClient(path=str(path))
    try:
        client.create_collection(
            "t", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE)
        )
        client.upsert(
            "t",
            [
                models.PointStruct(
                    id=point_id("old"),
                    vector=unit(0),
                    payload={ID_KEY: "old", TEXT_KEY: "a quokka", METADATA_KEY: {"source": "o.md"}},
                )
            ],
        )
    finally:
        client.close()


async def test_a_collection_without_the_sparse_vector_raises_and_still_works_for_dense(
    tmp_path: Path, make: Factory
) -> None:
    await asyncio.to_thread(_old_collection, tmp_path / "q")
    backend = make(f"qdrant+path://{tmp_path / 'q'}")
    with pytest.raises(UnsupportedOperationError, match="Re-create it"):
        await backend.keyword_search("quokka", top_k=3)
    # Everything else goes on: writes send the dense vector only, reads and dense search work.
    await backend.upsert([Record("new", unit(1), "another quokka", {"source": "n.md"})])
    assert ids(await backend.search(unit(1), top_k=1)) == ["new"]
    (row,) = await backend.get(ids=["new"], include_vectors=True)
    np.testing.assert_array_equal(row.vector, np.asarray(unit(1), dtype=np.float32))
    # Re-created, it has keyword search.
    await backend.drop()
    await backend.upsert([Record("new", unit(1), "another quokka", {"source": "n.md"})])
    assert ids(await backend.keyword_search("quokka", top_k=3)) == ["new"]


def test_facade_keyword_search_end_to_end() -> None:
    store = VectorStore(uri=":memory:", collection_name="facade")
    store.insert([unit(0), unit(1)], ["a quokka smiles", "ferry budget"], [{"source": "a"}, {"source": "b"}])
    assert store.supports_hybrid
    assert [h.text for h in store.keyword_search("quokkas", top_k=3)] == ["a quokka smiles"]
    assert store.keyword_search("quokka", filter={"source": "b"}) == []
    assert store.keyword_search("   ") == []
    store.close()
