"""LanceDBBackend against real tables in tmp_path: writes, search, filters, loops, errors, index, loop lag."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
import pytest

from mini import _portal
from mini.errors import DimensionMismatchError, DuplicateIdError, InvalidInputError, StoreError
from mini.stores.base import Record, VectorStore, VectorStoreBackend
from mini.stores.filters import matches, parse_filter
from mini.stores.lancedb import LanceDBBackend, map_lancedb_errors
from mini.testing.looplag import LoopLagProbe


def make(path: Path, name: str = "t", dimension: int | None = None, **kwargs: Any) -> LanceDBBackend:
    return LanceDBBackend(str(path), collection_name=name, dimension=dimension, token=None, **kwargs)


def unit(i: int, dim: int = 4) -> list[float]:
    return [1.0 if j == i % dim else 0.0 for j in range(dim)]


def rows(n: int, dim: int = 4, prefix: str = "r") -> list[Record]:
    return [
        Record(f"{prefix}{i}", unit(i, dim), f"text {i}", {"source": f"s{i % 3}", "n": i}) for i in range(n)
    ]


async def ids_for(backend: LanceDBBackend, spec: dict[str, Any], top_k: int = 100) -> set[str]:
    return {hit.id for hit in await backend.search(unit(0), top_k=top_k, filter=parse_filter(spec))}


def test_backend_satisfies_the_protocol_and_declares_capabilities(tmp_path: Path) -> None:
    backend = make(tmp_path)
    assert isinstance(backend, VectorStoreBackend)
    assert backend.supports_filters is True
    assert backend.supports_hybrid is True  # keyword_search: the native FTS index


def test_construction_does_no_io_and_validates_names(tmp_path: Path) -> None:
    target = tmp_path / "not-yet"
    backend = LanceDBBackend(f"lancedb://{target}", collection_name="docs-v2_1", dimension=8, token="ignored")
    assert not target.exists()
    assert backend.path == str(target)
    assert backend.dimension == 8
    for bad in ["", "a b", "../x", "a/b", "naïve", "x;drop"]:
        with pytest.raises(InvalidInputError):
            make(tmp_path, name=bad)
    with pytest.raises(InvalidInputError):
        make(tmp_path, dimension=0)


async def test_search_returns_best_first_and_an_exact_match_scores_one(tmp_path: Path) -> None:
    backend = make(tmp_path)
    await backend.insert(
        [Record(f"v{i}", v, f"t{i}") for i, v in enumerate([[1, 0, 0], [1, 1, 0], [0, 1, 0], [-1, 0, 0]])]
    )
    hits = await backend.search([1.0, 0.0, 0.0], top_k=4)
    assert [h.id for h in hits] == ["v0", "v1", "v2", "v3"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-6)
    assert hits[1].score == pytest.approx(1 / np.sqrt(2), abs=1e-6)
    assert hits[3].score == pytest.approx(-1.0, abs=1e-6)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len(await backend.search([1.0, 0.0, 0.0], top_k=2)) == 2


async def test_metadata_round_trips_exactly(tmp_path: Path) -> None:
    backend = make(tmp_path)
    metadata = {
        "source": "Zürich/bericht 🎉.pdf",
        "nested": {"list": [1, 2.5, "x", None, True, {"deep": ["ü", "\n\t\"'\\"]}]},
        "float": 2.0,
        "big": 2**62 + 1,
        "neg": -0.125,
        "flag": False,
        "none": None,
        "empty": {},
        "quote": "O'Brien",
    }
    await backend.insert([Record("a", unit(0), "text ü", metadata), Record("b", unit(1), "no metadata")])
    hits = {h.id: h for h in await backend.search(unit(0), top_k=2)}
    assert hits["a"].metadata == metadata
    assert isinstance(hits["a"].metadata["float"], float)
    assert hits["a"].source == "Zürich/bericht 🎉.pdf"
    assert hits["a"].text == "text ü"
    assert hits["b"].metadata == {}


async def test_upsert_twice_keeps_the_count_and_updates_text(tmp_path: Path) -> None:
    backend = make(tmp_path)
    await backend.upsert(rows(5))
    await backend.upsert([Record(r.id, r.vector, r.text + " v2", r.metadata) for r in rows(5)])
    assert await backend.count() == 5
    hits = await backend.search(unit(0), top_k=5)
    assert all(h.text.endswith(" v2") for h in hits)
    await backend.upsert([*rows(5), Record("new", unit(1), "new")])
    assert await backend.count() == 6


async def test_insert_raises_duplicate_id_error_listing_existing_ids_and_writes_nothing(
    tmp_path: Path,
) -> None:
    backend = make(tmp_path)
    await backend.insert(rows(3))
    with pytest.raises(DuplicateIdError) as info:
        await backend.insert([Record("fresh", unit(0), "x"), *rows(3)[1:]])
    assert info.value.ids == ["r1", "r2"]
    assert await backend.count() == 3
    assert await backend.existing_ids(["fresh", "r0"]) == {"r0"}


async def test_duplicate_check_and_existing_ids_cover_more_than_one_id_batch(tmp_path: Path) -> None:
    backend = make(tmp_path)
    await backend.insert(rows(2500, dim=2))
    ids = [f"r{i}" for i in range(0, 2600, 2)]
    assert await backend.existing_ids(ids) == {f"r{i}" for i in range(0, 2500, 2)}
    with pytest.raises(DuplicateIdError) as info:
        await backend.insert([Record("r2499", unit(0, 2), "x")])
    assert info.value.ids == ["r2499"]


async def test_insert_rejects_ids_repeated_within_one_call(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        await make(tmp_path).insert([Record("a", unit(0), "x"), Record("a", unit(1), "y")])


async def test_delete_by_ids_and_by_filter_returns_rows_deleted(tmp_path: Path) -> None:
    backend = make(tmp_path)
    await backend.insert(rows(9))
    assert await backend.delete(ids=["r0", "r1", "missing"]) == 2
    assert await backend.delete(filter=parse_filter({"source": "s2"})) == 3  # r2, r5, r8
    # ids and filter together delete rows matching either, each counted once.
    both = await backend.delete(ids=["r3", "r4"], filter=parse_filter({"n": {"$gte": 4}}))
    assert both == 4  # r3, r4, r6, r7
    assert await backend.count() == 0
    assert await backend.delete(ids=[]) == 0


async def test_count_supports_filters(tmp_path: Path) -> None:
    backend = make(tmp_path)
    await backend.insert(rows(10))
    assert await backend.count() == 10
    assert await backend.count(parse_filter({"source": "s1"})) == 3
    assert await backend.count(parse_filter({"n": {"$gte": 3, "$lt": 7}})) == 4
    assert await backend.count(parse_filter({"$or": [{"n": 0}, {"source": "s2"}]})) == 4


async def test_reads_of_a_missing_table_are_empty_and_create_nothing(tmp_path: Path) -> None:
    backend = make(tmp_path)
    assert await backend.search(unit(0), top_k=3) == []
    assert await backend.count() == 0
    assert await backend.existing_ids(["a"]) == set()
    assert await backend.delete(ids=["a"]) == 0
    await backend.optimize()
    await backend.drop()  # dropping a table that never existed is fine
    assert backend.dimension is None
    db = await lancedb.connect_async(str(tmp_path))
    assert (await db.list_tables()).tables == []


async def test_a_new_backend_on_the_same_directory_sees_the_data_and_its_dimension(tmp_path: Path) -> None:
    await make(tmp_path).insert(rows(4, dim=6))
    reopened = make(tmp_path)
    assert reopened.dimension is None  # nothing read yet
    assert await reopened.count() == 4
    assert reopened.dimension == 6
    hits = await reopened.search(unit(1, 6), top_k=1)
    assert hits[0].id == "r1"
    assert hits[0].metadata == {"source": "s1", "n": 1}


async def test_writes_by_another_backend_object_are_visible_to_an_open_one(tmp_path: Path) -> None:
    first, second = make(tmp_path), make(tmp_path)
    await first.insert(rows(2))
    assert await second.count() == 2
    await first.insert(rows(2, prefix="x"))
    assert await second.count() == 4


async def test_dimension_mismatches_raise_on_write_and_search(tmp_path: Path) -> None:
    configured = make(tmp_path, dimension=4)
    with pytest.raises(DimensionMismatchError):
        await configured.insert([Record("a", [1.0, 0.0, 0.0], "x")])
    assert await configured.count() == 0  # refused before creating a table of the wrong size
    await configured.insert(rows(2))
    with pytest.raises(DimensionMismatchError):
        await configured.insert([Record("b", [1.0] * 5, "x")])
    with pytest.raises(DimensionMismatchError):
        await configured.upsert([Record("b", [1.0] * 3, "x")])
    with pytest.raises(DimensionMismatchError):
        await configured.insert([Record("c", unit(0), "x"), Record("d", [1.0] * 3, "y")])
    with pytest.raises(DimensionMismatchError):
        await configured.search([1.0, 0.0], top_k=1)
    # The existing table's schema wins over a different configured dimension.
    other = make(tmp_path, dimension=8)
    assert await other.count() == 2
    assert other.dimension == 4
    with pytest.raises(DimensionMismatchError):
        await other.search([0.0] * 8, top_k=1)


async def test_bad_vectors_and_metadata_are_rejected_as_invalid_input(tmp_path: Path) -> None:
    backend = make(tmp_path)
    with pytest.raises(InvalidInputError):
        await backend.insert([Record("a", [1.0, float("nan"), 0.0], "x")])
    with pytest.raises(InvalidInputError):
        await backend.insert([Record("a", unit(0), "x", {"tags": {"a", "b"}})])
    with pytest.raises(InvalidInputError):
        await backend.insert([Record("a", unit(0), "x", {"score": float("inf")})])
    await backend.insert([Record("a", np.ones(4, dtype=np.float64), "x", {"page": np.int64(3)})])
    assert (await backend.search(unit(0), top_k=1))[0].metadata == {"page": 3}


async def test_drop_then_write_again_with_another_dimension(tmp_path: Path) -> None:
    backend = make(tmp_path)
    await backend.insert(rows(3))
    await backend.drop()
    assert backend.dimension is None
    assert await backend.count() == 0
    assert await backend.search(unit(0), top_k=1) == []
    await backend.insert(rows(2, dim=3))
    assert backend.dimension == 3
    assert await backend.count() == 2
    await backend.drop()
    await backend.drop()


async def test_concurrent_first_writes_do_not_fail(tmp_path: Path) -> None:
    # Racing creates used to break about one attempt in 25 (LanceDB commits the loser as an Overwrite).
    for attempt in range(12):
        name = f"race{attempt}"
        shared = make(tmp_path, name)
        others = [make(tmp_path, name) for _ in range(2)]
        await asyncio.gather(
            shared.insert(rows(3, prefix="a")),
            shared.upsert(rows(3, prefix="b")),
            others[0].insert(rows(3, prefix="c")),
            others[1].upsert(rows(3, prefix="d")),
        )
        assert await make(tmp_path, name).count() == 12


def test_one_backend_works_from_successive_loops_other_threads_and_the_portal(tmp_path: Path) -> None:
    backend = make(tmp_path)
    asyncio.run(backend.insert(rows(2)))
    assert asyncio.run(backend.count()) == 2
    _portal.run(backend.insert(rows(2, prefix="p")))
    # Writes from one loop are visible from another: the table handle is shared, not per loop.
    assert [h.id for h in asyncio.run(backend.search(unit(0), top_k=1))] in (["r0"], ["p0"])
    assert asyncio.run(backend.count()) == 4

    results: list[int] = []
    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            asyncio.run(backend.insert(rows(1, prefix="t")))
            results.append(asyncio.run(backend.count()))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert errors == []
    assert results == [5]
    assert _portal.run(backend.count()) == 5
    _portal.run(backend.aclose())
    assert _portal.run(backend.count()) == 5


async def test_aclose_releases_handles_and_the_next_call_reopens(tmp_path: Path) -> None:
    backend = make(tmp_path)
    await backend.insert(rows(2))
    await backend.aclose()
    assert await backend.count() == 2
    assert backend.dimension == 4


ADVERSARIAL = [
    "O'Brien",
    "x' OR '1'='1",
    "or 1==1",
    "a\\b",
    "a\\",
    "\\'",
    "x\\' OR 1=1 --",
    "%",
    "_",
    "a%b",
    "a_b",
    "Zürich",
    "🎉 party",
    '"quoted"',
    "line\nbreak\ttab",
    "\x01\x1f\x7f",
    "",
    " ",
    "NULL",
    "true",
    "1",
]


async def test_adversarial_string_values_match_exactly_their_own_rows(tmp_path: Path) -> None:
    backend = make(tmp_path)
    records = [Record(f"v{i}", unit(i), f"t{i}", {"name": v, "source": v}) for i, v in enumerate(ADVERSARIAL)]
    records += [Record("num", unit(0), "n", {"name": 1, "source": 1}), Record("nokey", unit(0), "none", {})]
    await backend.insert(records)
    total = len(records)
    for i, value in enumerate(ADVERSARIAL):
        for field in ("name", "source"):
            own = {f"v{i}"}
            assert await ids_for(backend, {field: value}) == own, (field, value)
            assert await ids_for(backend, {field: {"$in": [value, "\x00never"]}}) == own, (field, value)
            # $ne/$nin: every row that has the key and a different value (the missing-key row never matches).
            assert await backend.count(parse_filter({field: {"$ne": value}})) == total - 2, (field, value)
            assert await backend.count(parse_filter({field: {"$nin": [value]}})) == total - 2, (field, value)
            assert await backend.count(parse_filter({"id": f"v{i}", field: value})) == 1, (field, value)
    assert await ids_for(backend, {"name": 1}) == {"num"}
    assert await ids_for(backend, {"source": 1}) == {"num"}


# Heterogeneous values under the same keys; the reference semantics are `filters.matches`.
SEMANTIC_ROWS: list[dict[str, Any]] = [
    {"year": 2019, "lang": "en", "score": 0.5, "tags": ["a", "b"], "date": "2024-01-01"},
    {"year": 2020, "lang": "de", "score": 1, "tags": "a", "date": "2024-01-01 late"},
    {"year": 2021.0, "lang": "fr", "score": 2.75, "tags": {"a": 1}, "date": "2024"},
    {"year": 2022.5, "lang": "en", "score": None, "date": "2023-12-31"},
    {"year": "2020", "lang": ["en"], "score": "1", "date": 2024},
    {"year": None, "lang": {"en": True}, "tags": None, "date": 'a"b'},
    {"lang": "EN", "date": "a#"},
    {},
]

SEMANTIC_FILTERS: list[dict[str, Any]] = [
    {"year": 2020},
    {"year": 2021},
    {"year": {"$ne": 2020}},
    {"year": {"$gte": 2020}},
    {"year": {"$gt": 2020, "$lte": 2022.5}},
    {"year": {"$lt": 2021}},
    {"year": {"$in": [2019, 2021, "2020"]}},
    {"year": {"$nin": [2019, 2021]}},
    {"year": "2020"},
    {"lang": "en"},
    {"lang": {"$ne": "en"}},
    {"lang": {"$in": ["en", "de"]}},
    {"lang": {"$nin": ["en", "de"]}},
    {"lang": {"$gt": "de"}},
    {"score": 1},
    {"score": {"$gte": 0.5, "$lt": 2.75}},
    {"score": {"$ne": 1}},
    {"tags": "a"},
    {"tags": {"$ne": "a"}},
    {"tags": {"$gte": "a"}},
    {"tags": {"$gt": 0}},
    {"date": {"$gte": "2024-01-01"}},
    {"date": {"$lt": "2024-01-01 "}},
    {"date": {"$gt": "2024"}},
    {"date": {"$lt": "a#"}},
    {"missing": "x"},
    {"missing": {"$ne": "x"}},
    {"missing": {"$nin": [1]}},
    {"$or": [{"year": 2019}, {"lang": "fr"}]},
    {"$and": [{"lang": "en"}, {"$or": [{"year": {"$lt": 2020}}, {"score": 2.75}]}]},
    {"$or": [{"$and": [{"year": {"$gte": 2020}}, {"lang": {"$ne": "de"}}]}, {"missing": {"$ne": 1}}]},
]


async def test_filters_match_the_reference_semantics_on_mixed_type_metadata(tmp_path: Path) -> None:
    backend = make(tmp_path)
    await backend.insert([Record(f"m{i}", unit(i), "x", meta) for i, meta in enumerate(SEMANTIC_ROWS)])
    for spec in SEMANTIC_FILTERS:
        parsed = parse_filter(spec)
        expected = {f"m{i}" for i, meta in enumerate(SEMANTIC_ROWS) if matches(parsed, meta)}
        assert await ids_for(backend, spec) == expected, spec
        assert await backend.count(parsed) == len(expected), spec


async def test_booleans_and_numbers_are_different_types_in_filters(tmp_path: Path) -> None:
    backend = make(tmp_path)
    values = [True, False, 1, 0, 1.0, "true", "1"]
    await backend.insert([Record(f"b{i}", unit(i), "x", {"flag": v}) for i, v in enumerate(values)])
    assert await ids_for(backend, {"flag": True}) == {"b0"}
    assert await ids_for(backend, {"flag": False}) == {"b1"}
    assert await ids_for(backend, {"flag": 1}) == {"b2", "b4"}
    assert await ids_for(backend, {"flag": "true"}) == {"b5"}
    assert await ids_for(backend, {"flag": {"$ne": True}}) == {f"b{i}" for i in range(1, 7)}


async def test_map_lancedb_errors_translates_and_chains() -> None:
    original = RuntimeError("lance error: boom")
    with pytest.raises(StoreError) as info, map_lancedb_errors("search"):
        raise original
    assert info.value.__cause__ is original
    with pytest.raises(DuplicateIdError), map_lancedb_errors("insert"):
        raise DuplicateIdError(["x"])


async def test_a_foreign_table_without_a_vector_column_raises_store_error(tmp_path: Path) -> None:
    db = await lancedb.connect_async(str(tmp_path))
    await db.create_table("t", pa.table({"id": ["a"]}))
    with pytest.raises(StoreError):
        await make(tmp_path).count()


async def vector_indices(path: Path) -> list[Any]:
    # A fresh handle: an older one would keep answering from the table version it opened.
    table = await (await lancedb.connect_async(str(path))).open_table("t")
    return [ix for ix in await table.list_indices() if ix.columns == ["vector"]]


async def test_optimize_builds_the_full_text_index_and_keeps_it_current(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    backend = make(tmp_path)
    texts = ["the runners were running", "a quiet library", "glass is recycled monthly"]
    await backend.insert([Record(f"t{i}", rng.standard_normal(8), t, {}) for i, t in enumerate(texts)])
    await backend.optimize()
    table = await (await lancedb.connect_async(str(tmp_path))).open_table("t")
    (fts,) = [ix for ix in await table.list_indices() if ix.columns == ["text"]]
    assert fts.index_type == "FTS"
    assert [h.id for h in await backend.keyword_search("run", top_k=5)] == ["t0"]  # stemmed
    await backend.insert([Record("t9", rng.standard_normal(8), "he runs daily", {})])
    assert {h.id for h in await backend.keyword_search("run", top_k=5)} == {"t0", "t9"}  # unindexed rows too
    await backend.optimize()
    stats = await table.index_stats(fts.name)
    assert stats is not None and stats.num_unindexed_rows == 0


async def test_optimize_builds_a_cosine_ivf_flat_index_once_past_the_threshold(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((400, 8)).astype(np.float32)
    backend = make(tmp_path, index_threshold=300)
    await backend.insert([Record(f"i{i}", vectors[i], "x", {"n": i}) for i in range(200)])
    for start in (200, 250):  # below the threshold: compaction only
        await backend.optimize()
        assert await vector_indices(tmp_path) == []
        await backend.insert([Record(f"i{i}", vectors[i], "x", {"n": i}) for i in range(start, start + 50)])
    await backend.optimize()
    await backend.optimize()  # an existing index is not rebuilt
    indices = await vector_indices(tmp_path)
    assert [(ix.columns, ix.index_type) for ix in indices] == [(["vector"], "IvfFlat")]
    assert indices[0].index_details["metric_type"] == "COSINE"
    hits = await backend.search(vectors[123], top_k=3, filter=parse_filter({"n": {"$gte": 100}}))
    assert hits[0].id == "i123"
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    # Rows written after the index are found too (searched flat until the next optimize folds them in).
    await backend.insert([Record(f"i{i}", vectors[i], "x", {"n": i}) for i in range(300, 400)])
    assert (await backend.search(vectors[350], top_k=1))[0].id == "i350"
    await backend.optimize()
    assert (await backend.search(vectors[350], top_k=1))[0].id == "i350"
    assert await backend.count() == 400


def test_facade_sync_twins_work_end_to_end(tmp_path: Path) -> None:
    store = VectorStore(uri=str(tmp_path), collection_name="t")
    assert isinstance(store.backend, LanceDBBackend)
    metadata = [
        {"source": "a.pdf", "page": 1},
        {"source": "b.pdf", "page": 2},
        {"source": "a.pdf", "page": 3},
    ]
    ids = store.insert([unit(0), unit(1), unit(2)], ["alpha", "beta", "gamma"], metadata)
    assert len(ids) == 3
    assert store.dimension == 4
    with pytest.raises(DuplicateIdError):
        store.insert([unit(0)], ["alpha"], [metadata[0]])
    assert store.upsert([unit(0)], ["alpha"], [metadata[0]]) == ids[:1]
    hits = store.search(unit(1), top_k=2)
    assert hits[0].text == "beta"
    assert hits[0].score == pytest.approx(1.0, abs=1e-6)
    near_alpha = [1.0, 0.0, 0.5, 0.0]
    filtered = store.search(near_alpha, top_k=5, filter={"source": "a.pdf"})
    assert [h.text for h in filtered] == ["alpha", "gamma"]
    assert store.count() == 3
    assert store.count(filter={"page": {"$gte": 2}}) == 2
    assert store.delete(filter={"source": "a.pdf"}) == 2
    assert store.delete(ids=[ids[1]]) == 1
    assert store.count() == 0
    store.drop()
    store.close()


async def test_64_concurrent_searches_over_20k_rows_keep_the_loop_responsive(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((20_000, 384)).astype(np.float32)
    records = [Record(f"id{i}", row, "t", {"source": f"d{i % 50}"}) for i, row in enumerate(vectors.tolist())]
    queries = rng.standard_normal((64, 384)).astype(np.float32)
    # Debug mode makes asyncio log each callback that holds the loop > 50 ms: it names the culprit if this fails.
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.05
    caplog.set_level(logging.WARNING, logger="asyncio")
    # Our own worker threads (Arrow conversion, LanceDB's Rust pool) compete with the loop thread for the two
    # cores, so the OS scheduler can pause the loop now and then; a call of ours that blocks the loop would
    # show in every attempt, so one clean attempt of three proves the loop stays free.
    attempts: list[str] = []
    try:
        for attempt in range(3):
            caplog.clear()
            backend = make(tmp_path, f"lag{attempt}", dimension=384)
            probe = LoopLagProbe()
            async with probe:
                await backend.insert(records)  # Python lists: converted to Arrow off the loop
                results = await asyncio.gather(*(backend.search(q, top_k=5) for q in queries))
            assert all(len(hits) == 5 for hits in results)
            slow = [r.getMessage() for r in caplog.records if "took" in r.getMessage()]
            attempts.append(f"{probe.summary()}; slow callbacks: {slow}")
            if probe.own_max_ms < 50:
                break
        else:
            pytest.fail("\n".join(attempts))
    finally:
        loop.set_debug(False)
    expected = vectors[17] / np.linalg.norm(vectors[17])
    assert (await backend.search(expected, top_k=1))[0].id == "id17"


async def test_search_many_returns_one_ranking_per_vector_like_single_searches(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((300, 16)).astype(np.float32)
    backend = make(tmp_path)
    await backend.insert(
        [Record(f"r{i}", row, f"text {i}", {"source": f"s{i % 3}"}) for i, row in enumerate(vectors)]
    )
    queries = rng.standard_normal((5, 16)).astype(np.float32)
    many = await backend.search_many(list(queries), top_k=7, filter=parse_filter({"source": "s1"}))
    assert len(many) == 5
    for query, ranking in zip(queries, many, strict=True):
        single = await backend.search(query, top_k=7, filter=parse_filter({"source": "s1"}))
        assert [h.id for h in ranking] == [h.id for h in single]
        assert all(h.metadata["source"] == "s1" for h in ranking)
        assert [h.score for h in ranking] == sorted((h.score for h in ranking), reverse=True)
    assert await backend.search_many([], top_k=3) == []


async def test_concurrent_searches_share_store_calls(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((200, 8)).astype(np.float32)
    backend = make(tmp_path)
    await backend.insert([Record(f"r{i}", row, "t") for i, row in enumerate(vectors)])
    before = backend._searches.batches
    results = await asyncio.gather(*(backend.search(vectors[i], top_k=1) for i in range(64)))
    assert [hits[0].id for hits in results] == [f"r{i}" for i in range(64)]  # each caller got its own answer
    assert backend._searches.batches - before < 64 / 4  # and they rode along in a few multi-vector queries


async def test_get_by_ids_and_filter_with_and_without_vectors(tmp_path: Path) -> None:
    backend = make(tmp_path)
    await backend.upsert(rows(1500))  # more ids than one id predicate holds
    assert await backend.get(ids=[]) == []
    wanted = [f"r{i}" for i in range(0, 1500, 7)]
    got = await backend.get(ids=wanted)
    assert sorted(r.id for r in got) == sorted(wanted)
    assert all(r.vector is None for r in got)
    assert {r.text for r in got} >= {"text 0", "text 7"}
    one = (await backend.get(ids=["r5"], include_vectors=True))[0]
    assert one.metadata == {"source": "s2", "n": 5}
    np.testing.assert_array_equal(one.vector, np.asarray(unit(5), dtype=np.float32))
    both = await backend.get(ids=["r0", "r1", "r3"], filter=parse_filter({"source": "s0"}))
    assert sorted(r.id for r in both) == ["r0", "r3"]
    by_filter = await backend.get(filter=parse_filter({"n": {"$lt": 3}}))
    assert sorted(r.id for r in by_filter) == ["r0", "r1", "r2"]
    assert len(await backend.get(limit=10)) == 10
    assert len(await backend.get()) == 1500
    assert await make(tmp_path, name="missing").get() == []


async def test_replace_swaps_a_scope_in_one_commit_and_leaves_other_rows(tmp_path: Path) -> None:
    backend = make(tmp_path)
    await backend.upsert(rows(6))  # sources s0, s1, s2 with two rows each
    db = await lancedb.connect_async(str(tmp_path), read_consistency_interval=timedelta(0))
    table = await db.open_table("t")
    version = await table.version()
    new = [
        Record("r0", unit(1), "text 0 again", {"source": "s0"}),
        Record("x", unit(2), "new", {"source": "s0"}),
    ]
    deleted = await backend.replace(new, scope=parse_filter({"source": "s0"}))
    assert deleted == 1  # r3 was in scope and is not among the new rows
    assert await table.version() == version + 1  # one commit: never a moment with the scope half replaced
    in_scope = await backend.get(filter=parse_filter({"source": "s0"}))
    assert sorted((r.id, r.text) for r in in_scope) == [("r0", "text 0 again"), ("x", "new")]
    assert await backend.count() == 6  # s1 and s2 untouched: 4 + 2 new
    # An empty replacement empties the scope.
    assert await backend.replace([], scope=parse_filter({"source": "s1"})) == 2
    assert await backend.count(parse_filter({"source": "s1"})) == 0


def test_facade_get_and_replace_validate_input(tmp_path: Path) -> None:
    store = VectorStore(str(tmp_path), collection_name="f")
    store.upsert([unit(0), unit(1)], ["a", "b"], [{"source": "A"}, {"source": "B"}], ["a", "b"])
    assert [r.id for r in store.get(["a"])] == ["a"]
    with pytest.raises(InvalidInputError):
        store.get("a")
    with pytest.raises(InvalidInputError):
        store.replace({}, [unit(0)], ["a"])
    assert store.replace({"source": "A"}, [unit(2)], ["a2"], [{"source": "A"}], ["a2"]) == 1
    assert sorted(r.id for r in store.get()) == ["a2", "b"]
