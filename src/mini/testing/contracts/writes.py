"""Store contract checks for writes and lifecycle: insert, upsert, bad input, delete, replace, reopen, drop."""

from __future__ import annotations

import asyncio
import math

import numpy as np

from mini.errors import DimensionMismatchError, DuplicateIdError, InvalidInputError, UnsupportedFilterError
from mini.stores.base import Record
from mini.stores.filters import parse_filter
from mini.testing.contracts._common import DIM, BackendFactory, expect_error, ids_for, parsed, rows, unit


async def check_empty_collection_reads_are_empty(make: BackendFactory) -> None:
    backend = make("empty")
    assert await backend.search(unit(0), top_k=3) == []
    assert await backend.search_many([unit(0), unit(1)], top_k=3) == [[], []]
    assert await backend.count() == 0
    assert await backend.count(parse_filter({"n": 1})) == 0
    assert await backend.get() == []
    assert await backend.get(ids=["a"]) == []
    assert await backend.existing_ids(["a"]) == set()
    assert await backend.delete(ids=["a"]) == 0
    assert await backend.delete(ids=["a"], filter=parse_filter({"n": 1})) == 0
    assert await backend.replace([], scope=parsed({"source": "x"})) == 0
    await backend.drop()  # dropping a collection that never existed is fine
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
            Record("diagonal", [1.0, 1.0, 0.0, 0.0], "d"),
            Record("far", [0.0, 0.0, 1.0, 0.0], "f"),
            Record("opposite", [-1.0, 0.0, 0.0, 0.0], "o"),
        ]
    )
    hits = await backend.search([2.0, 0.0, 0.0, 0.0], top_k=5)  # not normalised: cosine ignores length
    assert [h.id for h in hits] == ["exact", "close", "diagonal", "far", "opposite"]
    expected = [1.0, 0.9 / math.hypot(0.9, 0.1), 1 / math.sqrt(2), 0.0, -1.0]
    assert all(abs(h.score - e) < 1e-5 for h, e in zip(hits, expected, strict=True)), hits
    assert [h.id for h in await backend.search(unit(0), top_k=2)] == ["exact", "close"]
    assert await backend.search_many([], top_k=3) == []
    await expect_error(InvalidInputError, backend.search(unit(0), top_k=0), "top_k=0")
    await expect_error(InvalidInputError, backend.search([math.nan] * DIM, top_k=1), "a NaN query")


async def check_metadata_and_text_round_trip(make: BackendFactory) -> None:
    backend = make("meta")
    metadata = {
        "source": "docs/Zürich bericht 🎉.md",
        "page": 3,
        "ratio": 0.25,
        "float": 2.0,
        "big": 2**62 + 1,
        "neg": -0.125,
        "flag": False,
        "none": None,
        "empty": {},
        "tags": ["x", "y"],
        "nested": {"a": 1, "list": [1, 2.5, "x", None, True, {"deep": ["ü", "\n\t\"'\\"]}]},
        "emoji": "🎉 \"quoted\" 'single' \\ back",
        # Names a backend might use for its own columns or payload keys: user metadata must not clash.
        "id": "not-the-row-id",
        "text": "not the text",
        "metadata": {"x": 1},
        "_id": "x",
        "_mini_id": "y",
    }
    text = "Line one\nLine two — ünïcödé 🎉"
    await backend.insert([Record("m", unit(0), text, metadata), Record("bare", unit(1), "no metadata")])
    hits = {hit.id: hit for hit in await backend.search(unit(0), top_k=2)}
    assert (hits["m"].text, hits["m"].metadata) == (text, metadata)
    assert isinstance(hits["m"].metadata["float"], float)
    assert hits["m"].source == metadata["source"]
    assert (hits["bare"].text, hits["bare"].metadata) == ("no metadata", {})
    (row,) = await backend.get(ids=["m"])
    assert (row.id, row.text, row.metadata) == ("m", text, metadata)
    # `id` filters the row id; every other name filters metadata, even `text`.
    assert await ids_for(backend, {"id": "m"}) == {"m"}
    assert await ids_for(backend, {"id": "not-the-row-id"}) == set()
    assert await ids_for(backend, {"text": "not the text"}) == {"m"}


async def check_upsert_is_idempotent_and_updates(make: BackendFactory) -> None:
    backend = make("upsert")
    await backend.upsert(rows(5))
    await backend.upsert(rows(5))
    assert await backend.count() == 5
    await backend.upsert([Record(r.id, r.vector, r.text + " v2", r.metadata) for r in rows(5)])
    assert all(h.text.endswith(" v2") for h in await backend.search(unit(0), top_k=5))
    await backend.upsert([Record("r1", unit(2), "changed", {"source": "s9"})])
    assert await backend.count() == 5
    (row,) = await backend.get(ids=["r1"], include_vectors=True)
    assert (row.text, row.metadata) == ("changed", {"source": "s9"})
    np.testing.assert_allclose(np.asarray(row.vector), unit(2), atol=1e-6)
    await backend.upsert([*rows(5), Record("new", unit(1), "new")])
    assert await backend.count() == 6


async def check_insert_refuses_existing_ids(make: BackendFactory) -> None:
    backend = make("dupes")
    await backend.insert(rows(3))
    error = await expect_error(
        DuplicateIdError,
        backend.insert([Record("fresh", unit(0), "x"), *rows(3)[1:]]),
        "insert of existing ids",
    )
    assert error.ids == ["r1", "r2"] and "r1" in str(error)
    assert await backend.count() == 3  # nothing written, not even the fresh row
    assert await backend.existing_ids(["r0", "r2", "fresh", "zz"]) == {"r0", "r2"}
    repeated = backend.insert([Record("a", unit(0), "x"), Record("a", unit(1), "y")])
    await expect_error(InvalidInputError, repeated, "an insert repeating an id")
    assert await backend.count() == 3


async def check_bad_input_is_rejected_before_writing(make: BackendFactory) -> None:
    backend = make("bad")
    bad = {
        "a NaN vector": [Record("a", [1.0, math.nan, 0.0, 0.0], "x")],
        "a set in metadata": [Record("a", unit(0), "x", {"tags": {"a", "b"}})],
        "an infinite metadata number": [Record("a", unit(0), "x", {"score": math.inf})],
        "a lone surrogate in text": [Record("a", unit(0), "lone \ud800 surrogate")],
    }
    for what, records in bad.items():
        await expect_error(InvalidInputError, backend.insert(records), what)
    mixed = backend.insert([Record("a", unit(0), "x"), Record("b", [1.0, 0.0], "y")])
    await expect_error(DimensionMismatchError, mixed, "one insert mixing dimensions")
    assert await backend.count() == 0
    assert backend.dimension is None  # nothing was created
    # NumPy vectors and scalars are fine: they are stored as plain numbers.
    await backend.insert([Record("a", np.ones(DIM, dtype=np.float64), "x", {"page": np.int64(3)})])
    assert (await backend.search(unit(0), top_k=1))[0].metadata == {"page": 3}


async def check_delete_by_ids_and_filter_returns_counts(make: BackendFactory) -> None:
    backend = make("delete")
    await backend.insert(rows(9))
    assert await backend.delete(ids=["r0", "r1", "missing"]) == 2
    assert await backend.delete(filter=parse_filter({"source": "s2"})) == 3  # r2, r5, r8
    both = await backend.delete(ids=["r3", "r4"], filter=parse_filter({"n": {"$gte": 4}}))
    assert both == 4  # r3, r4, r6, r7: rows matching either, each counted once
    assert await backend.count() == 0
    assert await backend.delete(ids=[]) == 0


async def check_replace_swaps_a_scope(make: BackendFactory) -> None:
    backend = make("replace")
    await backend.upsert(rows(6))  # sources s0, s1, s2 with two rows each
    new = [
        Record("r0", unit(1), "text 0 again", {"source": "s0"}),
        Record("x", unit(2), "new", {"source": "s0"}),
    ]
    assert await backend.replace(new, scope=parsed({"source": "s0"})) == 1  # r3 goes
    in_scope = await backend.get(filter=parse_filter({"source": "s0"}))
    assert sorted((r.id, r.text) for r in in_scope) == [("r0", "text 0 again"), ("x", "new")]
    assert await backend.count() == 6  # s1 and s2 untouched: 4 + 2 new
    assert await backend.replace([], scope=parsed({"source": "s1"})) == 2
    assert await backend.count(parse_filter({"source": "s1"})) == 0
    # A scope the backend cannot express fails before anything is written; one it can is applied.
    extra = [Record("y", unit(0), "y", {"source": "s9"})]
    try:
        deleted = await backend.replace(extra, scope=parsed({"source": {"$gt": "s8"}}))
    except UnsupportedFilterError:
        assert await backend.existing_ids(["y"]) == set()
    else:
        assert deleted == 0 and await backend.existing_ids(["y"]) == {"y"}


async def check_data_persists_across_backend_objects(make: BackendFactory) -> None:
    first = make("persist")
    await first.insert(rows(4))
    await first.aclose()
    again = make("persist")
    assert again.dimension is None  # nothing read yet: construction does no I/O
    assert await again.count() == 4
    assert again.dimension == DIM  # known once opened
    (hit,) = await again.search(unit(1), top_k=1)
    assert (hit.id, hit.metadata) == ("r1", {"source": "s1", "n": 1})
    # Writes through another object are visible to an open one.
    other = make("persist")
    await other.insert(rows(2, prefix="x"))
    assert await again.count() == 6
    # A closed object reopens on its next call.
    await again.aclose()
    assert await again.count() == 6
    assert again.dimension == DIM


async def check_a_collection_dropped_elsewhere_reads_empty(make: BackendFactory) -> None:
    """A collection dropped through another object: open objects read it as gone, and writes recreate it."""
    first, second = make("dropped"), make("dropped")
    await first.insert(rows(2))
    assert await second.count() == 2
    await second.drop()
    assert await first.count() == 0
    assert await first.search(unit(0), top_k=1) == []
    await first.upsert(rows(3))
    assert await second.count() == 3


async def check_dimension_mismatches_raise(make: BackendFactory) -> None:
    configured = make("dims", dimension=DIM)
    await expect_error(
        DimensionMismatchError, configured.insert([Record("a", [1.0, 0.0, 0.0], "x")]), "a 3-d first insert"
    )
    assert await configured.count() == 0  # refused before creating a collection of the wrong size
    assert configured.dimension == DIM
    await configured.insert(rows(2))
    for bad in ([1.0, 0.0], [0.0] * 5):
        what = f"a {len(bad)}-d vector in a {DIM}-d collection"
        await expect_error(DimensionMismatchError, configured.insert([Record("b", bad, "x")]), what)
        await expect_error(DimensionMismatchError, configured.upsert([Record("b", bad, "x")]), what)
        await expect_error(DimensionMismatchError, configured.search(bad, top_k=1), what)
    mixed = configured.insert([Record("c", unit(0), "x"), Record("d", [1.0] * 3, "y")])
    await expect_error(DimensionMismatchError, mixed, "one insert mixing dimensions")
    assert await configured.count() == 2
    # The existing collection's schema wins over a different configured dimension.
    other = make("dims", dimension=8)
    assert other.dimension == 8  # nothing read yet
    assert await other.count() == 2
    assert other.dimension == DIM
    await expect_error(DimensionMismatchError, other.search([0.0] * 8, top_k=1), "an 8-d search")


async def check_drop_then_recreate_with_another_dimension(make: BackendFactory) -> None:
    backend = make("drop")
    await backend.insert(rows(3))
    await backend.drop()
    assert backend.dimension is None
    assert await backend.count() == 0
    assert await backend.search(unit(0), top_k=1) == []
    await backend.insert(
        [Record("wide", [1.0] * 6, "x"), Record("wide2", [0.0, 1.0, 0.0, 0.0, 0.0, 0.0], "y")]
    )
    assert backend.dimension == 6
    assert await backend.count() == 2
    assert [h.id for h in await backend.search([1.0] * 6, top_k=1)] == ["wide"]
    await backend.drop()
    await backend.drop()  # dropping a missing collection is fine


async def check_concurrent_first_writes_do_not_fail(make: BackendFactory) -> None:
    # Racing creates used to break LanceDB about one round in 25 (it committed the loser as an Overwrite).
    for round_ in range(4):
        name = f"race{round_}"
        shared, other, third = make(name), make(name), make(name)
        await asyncio.gather(
            shared.insert(rows(3, prefix="a")),
            shared.upsert(rows(3, prefix="b")),
            other.insert(rows(3, prefix="c")),
            third.upsert(rows(3, prefix="d")),
        )
        assert await make(name).count() == 12


async def check_concurrent_writes_of_the_same_ids_store_each_once(make: BackendFactory) -> None:
    """Concurrent upserts and replaces of the same rows, from several tasks and backend objects, store each id
    exactly once (two ingestions of the same files do this). LanceDB used to keep one copy per writer."""
    writers = [make("same"), make("same"), make("same")]
    seed = Record("seed", unit(3), "seed", {"source": "elsewhere"})
    await writers[0].upsert([seed])  # the collection exists: the writers race on rows only
    batch = rows(24)
    s0 = [r for r in batch if r.source == "s0"]
    scope = parsed({"source": "s0"})
    for _ in range(2):
        await asyncio.gather(
            *(writer.upsert(batch) for writer in writers for _ in range(2)),
            *(writer.replace(s0, scope=scope) for writer in writers),
        )
    for writer in writers:
        stored = [row.id for row in await writer.get()]
        assert sorted(stored) == sorted(["seed", *(r.id for r in batch)]), sorted(stored)
        assert await writer.count() == len(batch) + 1


async def check_concurrent_replaces_of_a_scope_leave_one_version(make: BackendFactory) -> None:
    """Two replaces of one scope with different rows, at once: the scope ends up holding one of them, whole.
    Milvus and Qdrant (upsert, then delete the rest of the scope) used to leave it empty: each deleted the
    other's rows."""
    first, second = make("versions"), make("versions")
    await first.upsert([Record("other", unit(3), "other", {"source": "elsewhere"})])
    scope = parsed({"source": "doc"})
    for round_ in range(3):
        versions = [
            [Record(f"{name}{round_}-{i}", unit(i), name, {"source": "doc"}) for i in range(6)]
            for name in ("a", "b")
        ]
        await asyncio.gather(
            first.replace(versions[0], scope=scope), second.replace(versions[1], scope=scope)
        )
        stored = {row.id for row in await first.get(filter=scope)}
        assert stored in [{r.id for r in version} for version in versions], sorted(stored)
    assert await first.existing_ids(["other"]) == {"other"}
