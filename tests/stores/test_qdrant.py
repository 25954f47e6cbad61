"""QdrantBackend beyond the store contract (tests/stores/test_contracts.py): the filter translator as pure
functions, URIs, local mode's directory lock and shared client, and keyword search with our tokenizer and
Qdrant's IDF. The server code path runs in test_qdrant_server.py."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from mini.errors import InvalidInputError, StoreError, UnsupportedFilterError, UnsupportedOperationError
from mini.stores.base import Record, VectorStoreBackend, create_backend
from mini.stores.filters import Compare, In, Or, matches, parse_filter
from mini.stores.qdrant import QdrantBackend
from mini.stores.qdrant import backend as qdrant_backend
from mini.stores.qdrant.filters import (
    ID_KEY,
    ID_NAMESPACE,
    METADATA_KEY,
    TEXT_KEY,
    payload_key,
    point_id,
    to_qdrant,
)
from mini.stores.sparse import document_vector, term_index
from mini.testing.contracts import rows, unit
from tests.stores.conftest import assert_keyword_searches_coalesce

Factory = Callable[..., QdrantBackend]


@pytest.fixture
async def make() -> AsyncIterator[Factory]:
    """Backends on `:memory:` by default, or on a directory (`uri=disk(tmp_path)`); closed after the test."""
    made: list[QdrantBackend] = []

    def factory(
        uri: str = ":memory:", name: str = "t", dimension: int | None = None, **kwargs: Any
    ) -> QdrantBackend:
        backend = QdrantBackend(uri, collection_name=name, dimension=dimension, **kwargs)
        made.append(backend)
        return backend

    yield factory
    for backend in made:
        await backend.aclose()


def disk(path: Path) -> str:
    return f"qdrant+path://{path / 'qdrant'}"


def dumped(flt: models.Filter) -> Any:
    return json.loads(flt.model_dump_json(exclude_none=True))


# ------------------------------------------------------------------------------------ translator (pure)


def test_equality_uses_type_strict_matches_and_numeric_ranges() -> None:
    assert dumped(to_qdrant(Compare("lang", "eq", "en"))) == {
        "must": [{"key": "metadata.lang", "match": {"value": "en"}}]
    }
    assert dumped(to_qdrant(Compare("draft", "eq", True))) == {
        "must": [{"key": "metadata.draft", "match": {"value": True}}]
    }
    # Numbers: a Range, so 1 also finds a stored 1.0 (MatchValue(1) would not) and never a boolean.
    assert dumped(to_qdrant(Compare("year", "eq", 2020))) == {
        "must": [{"key": "metadata.year", "range": {"gte": 2020.0, "lte": 2020.0}}]
    }
    # Beyond 2**53 a double cannot tell neighbours apart: exact integer match instead.
    assert dumped(to_qdrant(Compare("big", "eq", 2**62 + 1))) == {
        "must": [{"key": "metadata.big", "match": {"value": 2**62 + 1}}]
    }


def test_negations_require_the_key_to_exist() -> None:
    exists = {
        "should": [
            {"must_not": [{"is_empty": {"key": "metadata.lang"}}]},
            {"is_null": {"key": "metadata.lang"}},
        ]
    }
    assert dumped(to_qdrant(Compare("lang", "ne", "en"))) == {
        "must": [exists],
        "must_not": [{"key": "metadata.lang", "match": {"value": "en"}}],
    }
    nin = dumped(to_qdrant(In("lang", ("en", "de"), negate=True)))
    assert nin == {"must": [exists], "must_not": [{"key": "metadata.lang", "match": {"any": ["en", "de"]}}]}


def test_membership_splits_strings_numbers_and_booleans() -> None:
    flt = dumped(to_qdrant(In("x", ("a", 1, 1.0, True, "b", "a"))))
    assert flt == {
        "should": [
            {"key": "metadata.x", "match": {"any": ["a", "b"]}},
            {"key": "metadata.x", "range": {"gte": 1.0, "lte": 1.0}},  # 1 and 1.0 collapse
            {"key": "metadata.x", "match": {"value": True}},  # True stays apart from 1
        ]
    }


def test_numeric_ranges_are_one_range_that_never_matches_booleans() -> None:
    assert dumped(to_qdrant(Compare("n", "gt", 0))) == {"must": [{"key": "metadata.n", "range": {"gt": 0.0}}]}
    with pytest.raises(InvalidInputError, match="booleans"):
        to_qdrant(Compare("n", "lte", True))


def test_string_ranges_raise_unsupported_filter_error() -> None:
    with pytest.raises(UnsupportedFilterError, match=r"Qdrant cannot order strings.*'date'"):
        to_qdrant(Compare("date", "gte", "2024-01-01"))
    with pytest.raises(UnsupportedFilterError):
        to_qdrant(Or((Compare("n", "eq", 1), Compare("id", "lt", "m"))))
    assert issubclass(UnsupportedFilterError, InvalidInputError)


def test_id_filters_use_the_mapped_point_ids() -> None:
    assert dumped(to_qdrant(Compare("id", "eq", "doc-1"))) == {"must": [{"has_id": [point_id("doc-1")]}]}
    assert dumped(to_qdrant(In("id", ("a", "b"), negate=True))) == {
        "must_not": [{"has_id": [point_id("a"), point_id("b")]}]
    }
    with pytest.raises(InvalidInputError):
        to_qdrant(Compare("id", "eq", 5))


def test_point_ids_are_deterministic_uuids_and_hex_ids_do_not_collide() -> None:
    hex_id = "0123456789abcdef0123456789abcdef"
    assert point_id(hex_id) == point_id(hex_id) == str(uuid.uuid5(ID_NAMESPACE, hex_id))
    # The tempting uuid.UUID(hex=id) shortcut would map this id onto the string form of itself; uuid5 does not.
    assert point_id(hex_id) != str(uuid.UUID(hex=hex_id))
    assert point_id(str(uuid.UUID(hex=hex_id))) != point_id(hex_id)
    assert len({point_id(f"id{i}") for i in range(10_000)}) == 10_000


def test_field_names_that_are_not_plain_are_quoted_as_one_key() -> None:
    assert payload_key("source") == "metadata.source"
    assert payload_key("chunk-index_2") == "metadata.chunk-index_2"
    assert payload_key("a.b") == 'metadata."a.b"'
    assert payload_key("naïve") == 'metadata."naïve"'


@pytest.mark.parametrize(
    "value", ["it's", 'say "hi"', "back\\slash", "' or 1==1 or '", '" or 1==1 or "', "%_*"]
)
def test_values_are_passed_as_structured_values_never_spliced(value: str) -> None:
    flt = to_qdrant(parse_filter({"name": value, "id": value, "tags": {"$in": [value, "x"]}}))  # type: ignore[arg-type]
    text = flt.model_dump_json()
    # The value only ever appears as one JSON string, and the key stays the key.
    assert json.dumps(value) in text
    assert dumped(flt)["must"][0] == {"key": "metadata.name", "match": {"value": value}}
    assert all(c.get("key", "metadata.name").startswith("metadata.") for c in dumped(flt)["must"])


def test_values_qdrant_cannot_compare_exactly_are_refused() -> None:
    # parse_filter refuses them for every engine, so the translator never sees one.
    for bad in (float("nan"), float("inf"), 2**64):
        with pytest.raises(InvalidInputError):
            parse_filter({"n": bad})


# ---------------------------------------------------------------------------------- construction, URIs


def test_protocol_capabilities_and_registry_uris(tmp_path: Path) -> None:
    for uri in (
        ":memory:",
        "qdrant://localhost:6333",
        "qdrants://example.com",
        f"qdrant+path://{tmp_path}/q",
    ):
        backend = create_backend(uri, collection_name="docs", dimension=None, token=None)
        assert isinstance(backend, QdrantBackend)
        assert isinstance(backend, VectorStoreBackend)
    assert QdrantBackend.supports_hybrid is True  # BM25 sparse vectors (tests/stores/test_keyword_qdrant.py)


def test_construction_does_no_io_and_parses_uris(tmp_path: Path) -> None:
    target = tmp_path / "not-yet"
    backend = QdrantBackend(f"qdrant+path://{target}", collection_name="docs-v2_1", dimension=8)
    assert not target.exists()
    assert backend.uri == f"qdrant+path://{target}"
    assert backend.dimension == 8
    cases = {
        "qdrant://db.internal:6333": "http://db.internal:6333",
        "qdrant://db.internal": "http://db.internal:6333",
        "QDRANTS://cloud.example.com:443/prefix/": "https://cloud.example.com:443/prefix",
        "qdrant://[::1]:7000": "http://[::1]:7000",
    }
    for uri, url in cases.items():
        remote = QdrantBackend(uri)
        assert remote._conn.url == url  # type: ignore[attr-defined]
    for bad in [
        "qdrant://",
        "qdrant://user:key@host:6333",
        "qdrant://h:port",
        "qdrant://h?api_key=x",
        "http://h",
    ]:
        with pytest.raises(InvalidInputError):
            QdrantBackend(bad)
    for name in ["", "a b", "../x", "a/b", "naïve", "x;drop"]:
        with pytest.raises(InvalidInputError):
            QdrantBackend(":memory:", collection_name=name)
    with pytest.raises(InvalidInputError):
        QdrantBackend(":memory:", dimension=0)


# ------------------------------------------------------------------------------------------- local mode


async def test_reads_of_a_missing_collection_create_nothing_on_disk(tmp_path: Path, make: Factory) -> None:
    backend = make(disk(tmp_path))
    assert await backend.count() == 0
    assert await backend.keyword_search("quokka", top_k=3) == []
    await backend.drop()
    await backend.aclose()
    meta = json.loads((tmp_path / "qdrant" / "meta.json").read_text())
    assert meta["collections"] == {}


async def test_backend_objects_on_one_directory_share_its_client(tmp_path: Path, make: Factory) -> None:
    # Local mode locks its directory: a second client on it fails even in-process, so objects share one.
    first, second = make(disk(tmp_path)), make(disk(tmp_path))
    await first.insert(rows(2))
    assert await second.count() == 2
    # A collection dropped through another object: reads see it gone, writes recreate it.
    await second.drop()
    assert await first.count() == 0
    await first.upsert(rows(3))
    assert await second.count() == 3
    await first.aclose()
    assert await second.count() == 3  # still open for the other object
    await second.aclose()
    # The last one closed: the directory's lock is released (a foreign client can open it) ...
    foreign = await asyncio.to_thread(QdrantClient, path=str(tmp_path / "qdrant"))
    assert (await asyncio.to_thread(foreign.count, "t")).count == 3
    await asyncio.to_thread(foreign.close)
    # ... and a closed object reopens on its next call, reading the dimension again.
    assert await first.count() == 3
    assert first.dimension == 4


async def test_another_process_holding_the_directory_gives_a_store_error(
    tmp_path: Path, make: Factory
) -> None:
    holder = await asyncio.to_thread(QdrantClient, path=str(tmp_path / "qdrant"))
    try:
        with pytest.raises(StoreError, match="already accessed by another instance"):
            await make(disk(tmp_path)).count()
    finally:
        await asyncio.to_thread(holder.close)


async def test_vectors_come_back_unit_length(make: Factory) -> None:
    backend = make()
    await backend.insert([Record("a", [3.0, 4.0, 0.0, 0.0], "x")])
    (row,) = await backend.get(include_vectors=True)
    np.testing.assert_allclose(row.vector, [0.6, 0.8, 0.0, 0.0], atol=1e-6)  # Qdrant normalises for cosine


async def test_unsupported_filters_fail_before_any_io(make: Factory) -> None:
    backend = make("qdrant://127.0.0.1:1")  # unreachable: reaching the network would be a StoreError
    for call in (
        backend.search(unit(0), top_k=1, filter=parse_filter({"date": {"$gte": "2024"}})),
        backend.count(parse_filter({"lang": {"$lt": "b"}})),
        backend.delete(filter=parse_filter({"id": {"$gt": "a"}})),
    ):
        with pytest.raises(InvalidInputError):
            await call


# ------------------------------------------------------------------------------------------ keyword search

# "quokka" is rare and twice in d0, "running" and "runs" test stemming, d5 has no text at all.
CORPUS: list[tuple[str, str, dict[str, Any]]] = [
    ("d0", "The quokka is a small marsupial; a quokka smiles.", {"source": "animals.md", "year": 2020}),
    ("d1", "A quokka lives on Rottnest Island near Perth.", {"source": "travel.md", "year": 2021}),
    ("d2", "The council runs the recycling schedule every week.", {"source": "council.md", "year": 2022}),
    ("d3", "Running the parks: rules for dogs and bikes.", {"source": "parks.md", "year": 2023}),
    ("d4", "Budget figures for the island ferry service.", {"source": "travel.md", "year": 2024}),
    ("d5", "", {}),
]


async def corpus(backend: QdrantBackend) -> QdrantBackend:
    await backend.insert([Record(i, unit(n), text, meta) for n, (i, text, meta) in enumerate(CORPUS)])
    return backend


def ids(hits: list[Any]) -> list[str]:
    return [h.id for h in hits]


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
    with pytest.raises(InvalidInputError):
        await backend.keyword_search(b"quokka", top_k=1)  # type: ignore[arg-type]


async def test_filters_keep_the_unfiltered_order(make: Factory) -> None:
    backend = await corpus(make())
    query = "quokka island council parks budget"
    unfiltered = await backend.keyword_search(query, top_k=10)
    for spec in ({"source": {"$ne": "travel.md"}}, {"year": {"$gte": 2021, "$lt": 2024}}):
        node = parse_filter(spec)
        got = await backend.keyword_search(query, top_k=10, filter=node)
        # Same order: Qdrant's IDF is collection-wide, filter or not.
        assert ids(got) == [h.id for h in unfiltered if matches(node, {**h.metadata, "id": h.id})], spec


async def test_big_batches_get_their_terms_in_a_worker_thread(
    make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    to_points = qdrant_backend.to_points

    def spy(records: Any, *mode: Any) -> Any:
        threads.append(threading.get_ident())
        return to_points(records, *mode)

    monkeypatch.setattr(qdrant_backend, "to_points", spy)
    backend = make()
    text = "quokka " + "filler words about the island " * 40  # ~1,200 characters: 40 rows pass the threshold
    await backend.upsert([Record(f"b{i}", unit(i), text if i else "only the quokka", {}) for i in range(40)])
    await backend.upsert([Record("small", unit(0), "quokka", {})])  # a few characters: on the loop
    assert threads[0] != threading.get_ident() and threads[1] == threading.get_ident()
    await backend.delete(ids=["small"])
    hits = await backend.keyword_search("quokka", top_k=3)
    assert hits[0].id == "b0"  # the short row: same term, shorter text
    assert len(hits) == 3


async def test_concurrent_searches_share_client_calls(make: Factory) -> None:
    backend = await corpus(make())
    await assert_keyword_searches_coalesce(
        backend, backend._searches, ["quokka", "council", "parks", "budget"]
    )


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
    await asyncio.to_thread(_old_collection, tmp_path / "qdrant")
    backend = make(disk(tmp_path))
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
