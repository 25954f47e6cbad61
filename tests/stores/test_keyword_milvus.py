"""MilvusBackend.keyword_search: Milvus's BM25 function on Milvus Lite (ranking, stop words, no stemming on
Lite, filters, limits, collections made before keyword search), and the server code path (`AsyncMilvusClient`)
against the Lite server of a file."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mini.errors import InvalidInputError, UnsupportedOperationError
from mini.stores.base import Record, VectorStore
from mini.stores.filters import Compare, matches, parse_filter
from mini.stores.milvus import _ANALYZER, MilvusBackend, _LiteServer
from mini.stores.sparse import ENGLISH_STOP_WORDS
from mini.testing.contracts import unit
from tests.stores.keyword_corpus import CORPUS

Make = Callable[..., MilvusBackend]


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "m.db")


@pytest.fixture
async def make(path: str) -> AsyncIterator[Make]:
    made: list[MilvusBackend] = []

    def factory(name: str = "t", uri: str | None = None, **kwargs: Any) -> MilvusBackend:
        made.append(MilvusBackend(uri or path, collection_name=name, **kwargs))
        return made[-1]

    yield factory
    for backend in made:
        await backend.aclose()
    assert path not in _LiteServer._servers


@contextmanager
def lite_server(path: str) -> Iterator[str]:
    """The URL of the Lite server our backends use for `path` (held open for the block)."""
    url = _LiteServer.acquire(path)
    try:
        yield url
    finally:
        _LiteServer.release(path)


async def corpus(backend: MilvusBackend) -> MilvusBackend:
    await backend.insert([Record(i, unit(n), text, meta) for n, (i, text, meta) in enumerate(CORPUS)])
    return backend


def ids(hits: list[Any]) -> list[str]:
    return [h.id for h in hits]


async def test_a_rare_term_twice_ranks_first_with_positive_bm25_scores(make: Make) -> None:
    backend = await corpus(make())
    hits = await backend.keyword_search("quokka", top_k=10)
    assert ids(hits) == ["d0", "d1"]
    assert hits[0].score > hits[1].score > 0  # Lite reports -BM25 as the distance: we report the score
    assert (hits[0].text, hits[0].metadata) == (CORPUS[0][1], CORPUS[0][2])
    assert ids(await backend.keyword_search("QUOKKA island", top_k=10))[0] == "d1"


async def test_lite_drops_stop_words_but_does_not_stem(make: Make, path: str) -> None:
    backend = await corpus(make())
    assert await backend.keyword_search("the and of", top_k=5) == []
    assert await backend.keyword_search("!!!", top_k=5) == []
    # Milvus Lite 3.2 has no stemmer: only the exact forms match ...
    assert ids(await backend.keyword_search("running", top_k=10)) == ["d3"]
    assert ids(await backend.keyword_search("runs", top_k=10)) == ["d2"]
    # ... while the collection asks for the English stemmer, which servers apply.
    with lite_server(path) as url:
        from pymilvus import MilvusClient

        client = MilvusClient(uri=url)
        try:
            fields = {f["name"]: f for f in client.describe_collection("t")["fields"]}
        finally:
            client.close()
    params = json.loads(fields["text"]["params"]["analyzer_params"])
    assert params == _ANALYZER
    assert {"type": "stemmer", "language": "english"} in params["filter"]
    assert params["filter"][1] == {"type": "stop", "stop_words": sorted(ENGLISH_STOP_WORDS)}


async def test_no_match_top_k_and_invalid_arguments(make: Make) -> None:
    backend = await corpus(make())
    assert await backend.keyword_search("xylophone", top_k=5) == []
    assert ids(await backend.keyword_search("quokka", top_k=1)) == ["d0"]
    query = "quokka island council parks budget"
    assert set(ids(await backend.keyword_search(query, top_k=10))) == {"d0", "d1", "d2", "d3", "d4"}
    assert len(await backend.keyword_search(query, top_k=3)) == 3
    for bad in (0, 16_385):
        with pytest.raises(InvalidInputError):
            await backend.keyword_search("quokka", top_k=bad)
    with pytest.raises(InvalidInputError):
        await backend.keyword_search("lone \ud800 surrogate", top_k=1)


async def test_filters_apply_as_in_dense_search(make: Make) -> None:
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
        {"source": {"$gt": "p"}},
        {"missing": "x"},
    ):
        parsed = parse_filter(spec)
        got = await backend.keyword_search(query, top_k=10, filter=parsed)
        expected = {h.id for h in unfiltered if matches(parsed, {**h.metadata, "id": h.id})}
        # As a set: Lite computes IDF over the filtered rows, so scores (and ties) may move.
        assert set(ids(got)) == expected, spec
        dense = await backend.search(unit(0), top_k=10, filter=parsed)
        assert set(ids(got)) <= set(ids(dense)), spec


async def test_writes_update_the_index(make: Make) -> None:
    backend = await corpus(make())
    await backend.upsert([Record("d4", unit(4), "A quokka on the ferry", {"source": "travel.md"})])
    assert await backend.keyword_search("budget", top_k=5) == []
    assert set(ids(await backend.keyword_search("quokka", top_k=5))) == {"d0", "d1", "d4"}
    assert await backend.delete(ids=["d0"]) == 1
    assert set(ids(await backend.keyword_search("quokka", top_k=5))) == {"d1", "d4"}
    await backend.replace([], scope=Compare("source", "eq", "travel.md"))
    assert await backend.keyword_search("quokka", top_k=5) == []


async def test_missing_collection_answers_empty(make: Make) -> None:
    backend = make("never_written")
    assert await backend.keyword_search("quokka", top_k=3) == []
    assert backend.dimension is None


async def test_concurrent_keyword_searches_share_requests(make: Make) -> None:
    backend = await corpus(make())
    queries = ["quokka", "council", "parks", "budget"] * 8
    before = backend._keyword_searches.batches
    results = await asyncio.gather(*(backend.keyword_search(q, top_k=2) for q in queries))
    assert [r[0].id for r in results[:4]] == ["d0", "d2", "d3", "d4"]
    assert all(r[0].id == results[i % 4][0].id for i, r in enumerate(results))
    assert backend._keyword_searches.batches - before < len(queries) / 4


async def test_the_server_code_path_searches_the_same(make: Make, path: str) -> None:
    # AsyncMilvusClient cannot create indexes on Lite (pymilvus#3711), so Lite creates the collection and the
    # server code path reads it through the same Lite server: describe, load and the text search request.
    lite = await corpus(make())
    expected = await lite.keyword_search(
        "quokka island", top_k=5, filter=parse_filter({"year": {"$lt": 2024}})
    )
    with lite_server(path) as url:
        server = make(uri=url)
        assert server.path is None and server.url == url
        got = await server.keyword_search(
            "quokka island", top_k=5, filter=parse_filter({"year": {"$lt": 2024}})
        )
        await server.aclose()
    assert ids(got) == ids(expected) == ["d1", "d0"]
    assert [h.score for h in got] == pytest.approx([h.score for h in expected])


def _create_old_collection(url: str) -> None:
    """The collection as this backend made it before keyword search: no analyzer, no sparse field, no BM25."""
    from pymilvus import CollectionSchema, DataType, FieldSchema, MilvusClient

    schema = CollectionSchema(
        [
            FieldSchema("id", DataType.VARCHAR, is_primary=True, auto_id=False, max_length=512),
            FieldSchema("vector", DataType.FLOAT_VECTOR, dim=4),
            FieldSchema("text", DataType.VARCHAR, max_length=65_535),
            FieldSchema("source", DataType.VARCHAR, max_length=65_535),
            FieldSchema("has_source", DataType.BOOL),
            FieldSchema("metadata", DataType.JSON),
            FieldSchema("kinds", DataType.JSON),
        ],
        enable_dynamic_field=False,
    )
    client = MilvusClient(uri=url)
    try:
        client.create_collection("t", schema=schema, consistency_level="Strong")
        index = MilvusClient.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type="COSINE")
        client.create_index("t", index, sync=False)
    finally:
        client.close()


async def test_a_collection_without_the_bm25_field_raises_and_still_works_for_dense(
    make: Make, path: str
) -> None:
    with lite_server(path) as url:
        await asyncio.to_thread(_create_old_collection, url)
        backend = make()
        with pytest.raises(UnsupportedOperationError, match="Re-create it"):
            await backend.keyword_search("quokka", top_k=3)
        await backend.upsert([Record("old", unit(1), "a quokka", {"source": "o.md"})])
        assert ids(await backend.search(unit(1), top_k=1)) == ["old"]
        # The server code path reads the same schema and refuses the same way.
        server = make(uri=url)
        with pytest.raises(UnsupportedOperationError):
            await server.keyword_search("quokka", top_k=3)
        await server.aclose()
    await backend.drop()  # re-created, it has keyword search
    await backend.upsert([Record("new", unit(1), "a quokka", {"source": "n.md"})])
    assert ids(await backend.keyword_search("quokka", top_k=3)) == ["new"]


async def test_keyword_search_works_after_reopening_the_file(make: Make) -> None:
    first = await corpus(make())
    before = await first.keyword_search("quokka island", top_k=5)
    await first.aclose()  # the Lite server stops; the next backend starts it again
    after = await make().keyword_search("quokka island", top_k=5)
    assert ids(after) == ids(before)


def test_facade_keyword_search_end_to_end(tmp_path: Path) -> None:
    store = VectorStore(uri=str(tmp_path / "facade.db"), collection_name="facade")
    store.insert([unit(0), unit(1)], ["a quokka smiles", "ferry budget"], [{"source": "a"}, {"source": "b"}])
    assert store.supports_hybrid
    assert [h.text for h in store.keyword_search("quokka", top_k=3)] == ["a quokka smiles"]
    assert store.keyword_search("quokka", filter={"source": "b"}) == []
    assert store.keyword_search("   ") == []
    store.close()
