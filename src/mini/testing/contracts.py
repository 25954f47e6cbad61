"""The store contract: what every `VectorStoreBackend` must do, as async checks any test suite can run.

    from mini.testing.contracts import CONTRACT_CHECKS

    @pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda c: c.__name__)
    async def test_contract(check, tmp_path):
        await check(lambda name="c", dimension=None: MyBackend(str(tmp_path), collection_name=name,
                                                               dimension=dimension, token=None))

A factory makes a backend for a collection name; calling it again with the same name must reach the same data
(that is how persistence is checked). Filters follow `mini.stores.filters.matches` for metadata whose keys
each hold one JSON type (strings, numbers or booleans) or are missing. String ranges are the one optional
feature: a backend that cannot express them raises `UnsupportedFilterError` instead of answering wrongly.

`check_keyword_search` is not in `CONTRACT_CHECKS`: run it on its own (it returns at once for a backend whose
`supports_hybrid` is False).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np

from mini.errors import DimensionMismatchError, DuplicateIdError, UnsupportedFilterError
from mini.stores.base import Record, VectorStoreBackend
from mini.stores.filters import Compare, matches, parse_filter
from mini.testing.looplag import LoopLagProbe

BackendFactory = Callable[..., VectorStoreBackend]
Check = Callable[[BackendFactory], Awaitable[None]]

DIM = 4


def unit(i: int, dim: int = DIM) -> list[float]:
    return [1.0 if j == i % dim else 0.0 for j in range(dim)]


def _rows(n: int, prefix: str = "r") -> list[Record]:
    return [Record(f"{prefix}{i}", unit(i), f"text {i}", {"source": f"s{i % 3}", "n": i}) for i in range(n)]


async def _ids(backend: VectorStoreBackend, spec: Any, top_k: int = 100) -> set[str]:
    hits = await backend.search(unit(0), top_k=top_k, filter=parse_filter(spec))
    return {hit.id for hit in hits}


# Portable filter data: each key holds one JSON type (numbers may be ints or floats) or is missing.
FILTER_ROWS: list[dict[str, Any]] = [
    {"source": "s0", "year": 2019, "lang": "en", "score": 0.5, "draft": True, "tag": "a"},
    {"source": "s1", "year": 2020, "lang": "de", "score": 1, "draft": False},
    {"source": "s0", "year": 2021, "lang": "fr", "score": 2.75, "tag": "b"},
    {"source": "s1", "year": 2022, "lang": "en", "score": 1.0, "draft": True},
    {"source": "s2", "lang": "EN", "tag": "a"},
    {},
]

FILTERS: list[dict[str, Any]] = [
    {"year": 2020},
    {"year": {"$ne": 2020}},
    {"year": {"$gte": 2020}},
    {"year": {"$gt": 2019, "$lte": 2021}},
    {"year": {"$lt": 2021}},
    {"year": {"$in": [2019, 2021]}},
    {"year": {"$nin": [2019, 2021]}},
    {"lang": "en"},
    {"lang": {"$ne": "en"}},
    {"lang": {"$in": ["en", "de"]}},
    {"lang": {"$nin": ["en", "de"]}},
    {"score": 1},
    {"score": 2.75},
    {"score": {"$gte": 0.5, "$lt": 2.75}},
    {"score": {"$ne": 1}},
    {"draft": True},
    {"draft": False},
    {"draft": {"$ne": True}},
    {"tag": "a"},
    {"source": "s1"},
    {"source": {"$ne": "s1"}},
    {"source": {"$in": ["s0", "s2"]}},
    {"id": "f2"},
    {"id": {"$in": ["f1", "f3", "nope"]}},
    {"id": {"$nin": ["f1"]}},
    {"missing": "x"},
    {"missing": {"$ne": "x"}},
    {"missing": {"$nin": [1]}},
    {"$or": [{"year": 2019}, {"lang": "fr"}]},
    {"$and": [{"lang": "en"}, {"$or": [{"year": {"$lt": 2020}}, {"score": 1}]}]},
    {"$or": [{"$and": [{"year": {"$gte": 2020}}, {"lang": {"$ne": "de"}}]}, {"tag": "a"}]},
    {"source": "s0", "tag": {"$in": ["a", "b"]}},
]

STRING_RANGES: list[dict[str, Any]] = [
    {"lang": {"$gt": "de"}},
    {"lang": {"$gte": "en", "$lt": "fr"}},
    {"source": {"$gte": "s1"}},
]

# Values that break naive quoting in SQL, Milvus expressions, JSON paths or LIKE patterns.
ADVERSARIAL = [
    "O'Brien",
    "x' OR '1'='1",
    "' or 1==1 or '",
    '" or 1==1 or "',
    "or 1==1",
    "a\\b",
    "a\\",
    "\\'",
    "x\\' OR 1=1 --",
    "%",
    "_",
    "a%b",
    "a_b",
    "%_*",
    "Zürich",
    "naïve 😀",
    '"quoted"',
    "line\nbreak\ttab",
    "NULL",
    "true",
    "1",
]


async def check_empty_collection_reads_are_empty(make: BackendFactory) -> None:
    backend = make("empty")
    assert await backend.search(unit(0), top_k=3) == []
    assert await backend.search_many([unit(0), unit(1)], top_k=3) == [[], []]
    assert await backend.count() == 0
    assert await backend.get() == []
    assert await backend.existing_ids(["a"]) == set()
    assert await backend.delete(ids=["a"]) == 0
    assert backend.dimension is None
    # Reading created nothing: the first write may still choose the dimension.
    await backend.insert([Record("a", [1.0, 0.0, 0.0], "t")])
    assert backend.dimension == 3


async def check_search_is_best_first_with_cosine_scores(make: BackendFactory) -> None:
    backend = make("order")
    await backend.insert(
        [
            Record("exact", [1.0, 0.0, 0.0, 0.0], "e"),
            Record("close", [0.9, 0.1, 0.0, 0.0], "c"),
            Record("far", [0.0, 0.0, 1.0, 0.0], "f"),
            Record("opposite", [-1.0, 0.0, 0.0, 0.0], "o"),
        ]
    )
    hits = await backend.search([2.0, 0.0, 0.0, 0.0], top_k=4)  # not normalised: cosine ignores length
    assert [h.id for h in hits] == ["exact", "close", "far", "opposite"]
    scores = [h.score for h in hits]
    assert abs(scores[0] - 1.0) < 1e-4 and abs(scores[2]) < 1e-4 and abs(scores[3] + 1.0) < 1e-4
    assert scores == sorted(scores, reverse=True)
    assert [h.id for h in await backend.search(unit(0), top_k=2)] == ["exact", "close"]


async def check_metadata_and_text_round_trip(make: BackendFactory) -> None:
    backend = make("meta")
    metadata = {
        "source": "docs/ä.md",
        "page": 3,
        "ratio": 0.25,
        "flag": False,
        "none": None,
        "tags": ["x", "y"],
        "nested": {"a": 1, "b": ["c"]},
        "emoji": "🎉 \"quoted\" 'single' \\ back",
    }
    text = "Line one\nLine two — ünïcödé 🎉"
    await backend.insert([Record("m", unit(0), text, metadata)])
    (hit,) = await backend.search(unit(0), top_k=1)
    assert (hit.id, hit.text, hit.metadata) == ("m", text, metadata)
    (row,) = await backend.get(ids=["m"])
    assert (row.text, row.metadata) == (text, metadata)


async def check_upsert_is_idempotent_and_updates(make: BackendFactory) -> None:
    backend = make("upsert")
    await backend.upsert(_rows(5))
    await backend.upsert(_rows(5))
    assert await backend.count() == 5
    await backend.upsert([Record("r1", unit(2), "changed", {"source": "s9"})])
    assert await backend.count() == 5
    (row,) = await backend.get(ids=["r1"], include_vectors=True)
    assert (row.text, row.metadata) == ("changed", {"source": "s9"})
    np.testing.assert_allclose(np.asarray(row.vector), unit(2), atol=1e-6)


async def check_insert_refuses_existing_ids(make: BackendFactory) -> None:
    backend = make("dupes")
    await backend.insert(_rows(3))
    try:
        await backend.insert([Record("r1", unit(0), "again"), Record("new", unit(0), "new")])
    except DuplicateIdError as exc:
        assert "r1" in str(exc)
    else:
        raise AssertionError("insert of an existing id did not raise DuplicateIdError")
    assert await backend.count() == 3  # nothing written
    assert await backend.existing_ids(["r0", "r2", "zz"]) == {"r0", "r2"}


async def check_search_many_equals_single_searches(make: BackendFactory) -> None:
    backend = make("many")
    await backend.insert(_rows(12))
    queries = [unit(0), unit(1), [0.5, 0.5, 0.0, 0.0]]
    many = await backend.search_many(queries, top_k=4)
    singles = [await backend.search(q, top_k=4) for q in queries]
    assert [[h.id for h in r] for r in many] == [[h.id for h in r] for r in singles]
    filtered = await backend.search_many(queries, top_k=4, filter=parse_filter({"source": "s1"}))
    assert all(hit.metadata["source"] == "s1" for ranking in filtered for hit in ranking)


async def check_filters_follow_the_reference_semantics(make: BackendFactory) -> None:
    backend = make("filters")
    await backend.insert([Record(f"f{i}", unit(i), f"x{i}", meta) for i, meta in enumerate(FILTER_ROWS)])
    for spec in FILTERS:
        parsed = parse_filter(spec)
        expected = {f"f{i}" for i, meta in enumerate(FILTER_ROWS) if matches(parsed, {**meta, "id": f"f{i}"})}
        assert await _ids(backend, spec) == expected, spec
        assert await backend.count(parsed) == len(expected), spec
        assert {r.id for r in await backend.get(filter=parsed)} == expected, spec


async def check_string_ranges_are_right_or_refused(make: BackendFactory) -> None:
    backend = make("ranges")
    await backend.insert([Record(f"f{i}", unit(i), f"x{i}", meta) for i, meta in enumerate(FILTER_ROWS)])
    for spec in STRING_RANGES:
        parsed = parse_filter(spec)
        expected = {f"f{i}" for i, meta in enumerate(FILTER_ROWS) if matches(parsed, meta)}
        try:
            got = await _ids(backend, spec)
        except UnsupportedFilterError:
            continue
        assert got == expected, spec


async def check_adversarial_values_match_only_their_own_rows(make: BackendFactory) -> None:
    backend = make("inject")
    records = [Record(f"v{i}", unit(i), f"t{i}", {"name": v, "source": v}) for i, v in enumerate(ADVERSARIAL)]
    records.append(Record("nokey", unit(0), "none", {}))
    await backend.insert(records)
    having_key = len(ADVERSARIAL)
    for i, value in enumerate(ADVERSARIAL):
        for field in ("name", "source"):
            own = {f"v{i}"}
            assert await _ids(backend, {field: value}) == own, (field, value)
            assert await _ids(backend, {field: {"$in": [value, "never-stored"]}}) == own, (field, value)
            assert await backend.count(parse_filter({field: {"$ne": value}})) == having_key - 1, (
                field,
                value,
            )
            assert await backend.count(parse_filter({field: {"$nin": [value]}})) == having_key - 1, (
                field,
                value,
            )
        assert await _ids(backend, {"id": f"v{i}", "name": value}) == {f"v{i}"}
    # Ids are values too.
    await backend.insert([Record(value, unit(1), "by id") for value in ADVERSARIAL[:6]])
    for value in ADVERSARIAL[:6]:
        assert await _ids(backend, {"id": value}) == {value}, value


async def check_booleans_and_numbers_are_different_types(make: BackendFactory) -> None:
    backend = make("types")
    # One key per type, so backends with typed payload indexes can follow; True must still not equal 1.
    await backend.insert(
        [
            Record("t", unit(0), "x", {"flag": True, "num": 1}),
            Record("f", unit(1), "x", {"flag": False, "num": 0}),
            Record("one", unit(2), "x", {"num": 1.0}),
        ]
    )
    assert await _ids(backend, {"flag": True}) == {"t"}
    assert await _ids(backend, {"flag": False}) == {"f"}
    assert await _ids(backend, {"num": 1}) == {"t", "one"}
    assert await _ids(backend, {"flag": 1}) == set()
    assert await _ids(backend, {"num": True}) == set()


async def check_delete_by_ids_and_filter_returns_counts(make: BackendFactory) -> None:
    backend = make("delete")
    await backend.insert(_rows(9))
    assert await backend.delete(ids=["r0", "r1", "missing"]) == 2
    assert await backend.delete(filter=parse_filter({"source": "s2"})) == 3  # r2, r5, r8
    both = await backend.delete(ids=["r3", "r4"], filter=parse_filter({"n": {"$gte": 4}}))
    assert both == 4  # r3, r4, r6, r7: rows matching either, each counted once
    assert await backend.count() == 0
    assert await backend.delete(ids=[]) == 0


async def check_count_get_and_large_id_lists(make: BackendFactory) -> None:
    backend = make("bulk")
    records = [Record(f"id{i}", unit(i), f"t{i}", {"source": f"s{i % 4}", "n": i}) for i in range(2500)]
    await backend.upsert(records)
    assert await backend.count() == 2500
    assert await backend.count(parse_filter({"source": "s1"})) == 625
    wanted = [f"id{i}" for i in range(0, 2500, 2)] + ["nope"]
    assert len(await backend.existing_ids(wanted)) == 1250
    got = await backend.get(ids=wanted, filter=parse_filter({"n": {"$lt": 100}}))
    assert sorted(r.id for r in got) == sorted(f"id{i}" for i in range(0, 100, 2))
    assert all(r.vector is None for r in got)
    assert len(await backend.get(limit=7)) == 7
    assert len(await backend.get()) == 2500
    assert await backend.delete(ids=wanted) == 1250
    assert await backend.count() == 1250


async def check_replace_swaps_a_scope(make: BackendFactory) -> None:
    backend = make("replace")
    await backend.upsert(_rows(6))  # sources s0, s1, s2 with two rows each
    new = [
        Record("r0", unit(1), "text 0 again", {"source": "s0"}),
        Record("x", unit(2), "new", {"source": "s0"}),
    ]
    assert await backend.replace(new, scope=Compare("source", "eq", "s0")) == 1  # r3 goes
    in_scope = await backend.get(filter=parse_filter({"source": "s0"}))
    assert sorted((r.id, r.text) for r in in_scope) == [("r0", "text 0 again"), ("x", "new")]
    assert await backend.count() == 6
    assert await backend.replace([], scope=Compare("source", "eq", "s1")) == 2
    assert await backend.count(parse_filter({"source": "s1"})) == 0


async def check_data_persists_across_backend_objects(make: BackendFactory) -> None:
    first = make("persist")
    await first.insert(_rows(4))
    await first.aclose()
    again = make("persist")
    assert await again.count() == 4
    assert again.dimension == DIM  # known once opened
    assert (await again.search(unit(1), top_k=1))[0].id in {"r1"}


async def check_dimension_mismatches_raise(make: BackendFactory) -> None:
    backend = make("dims")
    await backend.insert(_rows(2))
    for bad in ([1.0, 0.0], [0.0] * 5):
        try:
            await backend.insert([Record("bad", bad, "x")])
        except DimensionMismatchError:
            pass
        else:
            raise AssertionError(f"a {len(bad)}-d insert into a {DIM}-d collection did not raise")
        try:
            await backend.search(bad, top_k=1)
        except DimensionMismatchError:
            pass
        else:
            raise AssertionError(f"a {len(bad)}-d search of a {DIM}-d collection did not raise")
    configured = make("configured", dimension=8)
    try:
        await configured.insert(_rows(1))
    except DimensionMismatchError:
        pass
    else:
        raise AssertionError("a 4-d insert into a collection configured for 8 did not raise")
    assert await configured.count() == 0


async def check_drop_then_recreate_with_another_dimension(make: BackendFactory) -> None:
    backend = make("drop")
    await backend.insert(_rows(3))
    await backend.drop()
    assert await backend.count() == 0
    await backend.insert([Record("wide", [1.0] * 6, "x")])
    assert backend.dimension == 6
    assert [h.id for h in await backend.search([1.0] * 6, top_k=5)] == ["wide"]
    await backend.drop()
    await backend.drop()  # dropping a missing collection is fine


async def check_concurrent_first_writes_do_not_fail(make: BackendFactory) -> None:
    shared = make("race")
    other = make("race")
    await asyncio.gather(
        shared.insert(_rows(3, prefix="a")),
        shared.upsert(_rows(3, prefix="b")),
        other.upsert(_rows(3, prefix="c")),
    )
    assert await make("race").count() == 9


async def check_64_concurrent_searches_keep_the_loop_responsive(make: BackendFactory) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((2000, 384)).astype(np.float32)
    backend = make("lag", dimension=384)
    await backend.upsert(
        [Record(f"id{i}", row, "t", {"source": f"d{i % 10}"}) for i, row in enumerate(vectors)]
    )
    queries = rng.standard_normal((64, 384)).astype(np.float32)
    await backend.search(queries[0], top_k=5)  # warm (index load, connections)
    # One clean attempt of three: the machine is shared, and our own worker threads compete for two cores.
    summaries = []
    for _ in range(3):
        probe = LoopLagProbe()
        async with probe:
            results = await asyncio.gather(*(backend.search(q, top_k=5) for q in queries))
        assert all(len(hits) == 5 for hits in results)
        summaries.append(probe.summary())
        if probe.own_max_ms < 50:
            break
    else:
        raise AssertionError("; ".join(summaries))
    expected = vectors[17] / np.linalg.norm(vectors[17])
    assert (await backend.search(expected, top_k=1))[0].id == "id17"


# Keyword search data: "zebra" appears twice in k0 and once in k1, at the same length, so every BM25 ranks k0
# first; the other rows share no word with it.
KEYWORD_ROWS: list[tuple[str, str, dict[str, Any]]] = [
    ("k0", "zebra river zebra", {"source": "a", "year": 2020}),
    ("k1", "zebra river town", {"source": "b", "year": 2021}),
    ("k2", "Quarterly budget figures for the town council", {"source": "a", "year": 2022}),
    ("k3", "Council meeting notes about the budget", {"source": "b", "year": 2023}),
    ("k4", "Recycling schedule and parks rules", {"source": "a"}),
    ("k5", "", {}),
]


async def check_keyword_search(make: BackendFactory) -> None:
    """`keyword_search` (backends with `supports_hybrid`; others pass untested): BM25 order, only rows sharing
    a term, top_k, filters as in dense search, case-insensitive, and writes, upserts and deletes visible."""
    backend = make("keyword")
    if not backend.supports_hybrid:
        return
    assert await backend.keyword_search("zebra", top_k=3) == []  # no collection yet: empty, nothing created
    await backend.insert([Record(i, unit(n), text, meta) for n, (i, text, meta) in enumerate(KEYWORD_ROWS)])
    hits = await backend.keyword_search("zebra", top_k=10)
    assert [h.id for h in hits] == ["k0", "k1"], hits
    assert hits[0].score > hits[1].score > 0
    assert (hits[0].text, hits[0].metadata) == ("zebra river zebra", {"source": "a", "year": 2020})
    assert [h.id for h in await backend.keyword_search("ZEBRA", top_k=10)] == ["k0", "k1"]
    assert [h.id for h in await backend.keyword_search("zebra", top_k=1)] == ["k0"]
    assert await backend.keyword_search("xylophone", top_k=5) == []
    budget = await backend.keyword_search("budget council", top_k=10)
    assert {h.id for h in budget} == {"k2", "k3"}
    assert [h.score for h in budget] == sorted((h.score for h in budget), reverse=True)
    for spec, query in (
        ({"source": "b"}, "zebra"),
        ({"year": {"$gte": 2021}}, "zebra town budget"),
        ({"$or": [{"source": "a"}, {"year": 2023}]}, "zebra budget"),
        ({"missing": "x"}, "zebra"),
    ):
        parsed = parse_filter(spec)
        got = await backend.keyword_search(query, top_k=10, filter=parsed)
        unfiltered = await backend.keyword_search(query, top_k=10)
        expected = [h.id for h in unfiltered if matches(parsed, {**h.metadata, "id": h.id})]
        assert sorted(h.id for h in got) == sorted(expected), spec
        assert all(matches(parsed, h.metadata) for h in got), spec
    # Writes reach the keyword index: new text matches, replaced text no longer does, deleted rows vanish.
    await backend.upsert([Record("k2", unit(2), "zebra parks", {"source": "a", "year": 2022})])
    assert {h.id for h in await backend.keyword_search("budget", top_k=10)} == {"k3"}
    assert {h.id for h in await backend.keyword_search("zebra", top_k=10)} == {"k0", "k1", "k2"}
    assert await backend.delete(ids=["k1"]) == 1
    assert {h.id for h in await backend.keyword_search("zebra", top_k=10)} == {"k0", "k2"}


CONTRACT_CHECKS: Sequence[Check] = (
    check_empty_collection_reads_are_empty,
    check_search_is_best_first_with_cosine_scores,
    check_metadata_and_text_round_trip,
    check_upsert_is_idempotent_and_updates,
    check_insert_refuses_existing_ids,
    check_search_many_equals_single_searches,
    check_filters_follow_the_reference_semantics,
    check_string_ranges_are_right_or_refused,
    check_adversarial_values_match_only_their_own_rows,
    check_booleans_and_numbers_are_different_types,
    check_delete_by_ids_and_filter_returns_counts,
    check_count_get_and_large_id_lists,
    check_replace_swaps_a_scope,
    check_data_persists_across_backend_objects,
    check_dimension_mismatches_raise,
    check_drop_then_recreate_with_another_dimension,
    check_concurrent_first_writes_do_not_fail,
    check_64_concurrent_searches_keep_the_loop_responsive,
)
