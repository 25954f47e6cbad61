"""MilvusBackend on Milvus Lite in tmp_path (writes, search, filters, loops, errors, loop lag), the filter
translator as pure functions, and the server path against unreachable addresses."""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mini import _portal
from mini.errors import (
    ConfigurationError,
    DimensionMismatchError,
    DuplicateIdError,
    InvalidInputError,
    StoreError,
)
from mini.stores.base import Record, VectorStore, VectorStoreBackend
from mini.stores.filters import And, Compare, In, Or, matches, parse_filter
from mini.stores.milvus import MilvusBackend, _LiteServer, map_milvus_errors
from mini.stores.milvus_expr import id_in, kind_of, literal, quote, to_expr
from mini.testing.looplag import LoopLagProbe

Make = Callable[..., MilvusBackend]


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Make]:
    """Backends on one Milvus Lite file of this test; closed, and the Lite server stopped, afterwards."""
    path = str(tmp_path / "m.db")
    made: list[MilvusBackend] = []

    def factory(name: str = "t", dimension: int | None = None, **kwargs: Any) -> MilvusBackend:
        backend = MilvusBackend(path, collection_name=name, dimension=dimension, token=None, **kwargs)
        made.append(backend)
        return backend

    yield factory
    for backend in made:
        await backend.aclose()  # the last one stops this path's Lite server process
    assert path not in _LiteServer._servers


@contextmanager
def lite_client(path: Path) -> Iterator[Any]:
    """A plain pymilvus client on the Lite server our backends use for `path` (the file allows one process)."""
    from pymilvus import MilvusClient

    url = _LiteServer.acquire(str(path))
    client = MilvusClient(uri=url)
    try:
        yield client
    finally:
        client.close()
        _LiteServer.release(str(path))


def unit(i: int, dim: int = 4) -> list[float]:
    return [1.0 if j == i % dim else 0.0 for j in range(dim)]


def rows(n: int, dim: int = 4, prefix: str = "r") -> list[Record]:
    return [
        Record(f"{prefix}{i}", unit(i, dim), f"text {i}", {"source": f"s{i % 3}", "n": i}) for i in range(n)
    ]


async def ids_for(backend: MilvusBackend, spec: dict[str, Any], top_k: int = 100) -> set[str]:
    return {hit.id for hit in await backend.search(unit(0), top_k=top_k, filter=parse_filter(spec))}


# --- the translator, as pure functions -------------------------------------------------------------------


def test_quote_escapes_quotes_backslashes_and_line_breaks_and_keeps_unicode_raw() -> None:
    assert quote("it's") == '"it\'s"'
    assert quote('say "hi"') == '"say \\"hi\\""'
    assert quote("back\\slash") == '"back\\\\slash"'
    assert quote("a\nb\rc\td") == '"a\\nb\\rc\\td"'
    assert quote('" or 1==1 or "') == '"\\" or 1==1 or \\""'
    assert quote("naïve 😀") == '"naïve 😀"'
    with pytest.raises(InvalidInputError):
        quote("bad \ud800 surrogate")


def test_literals_keep_types_apart_and_reject_what_milvus_cannot_hold() -> None:
    assert literal(True) == "true"
    assert literal(False) == "false"
    assert literal(1) == "1"
    assert literal(-5) == "-5"
    assert literal(2.5) == "2.5"
    assert literal(1e-05) == "1e-05"
    assert literal(2**63 - 1) == str(2**63 - 1)
    for bad in (2**63, -(2**63), math.nan, math.inf, -math.inf):
        with pytest.raises(InvalidInputError):
            literal(bad)


def test_id_and_source_use_plain_columns() -> None:
    assert to_expr(Compare("id", "eq", 'a"b')) == 'id == "a\\"b"'
    assert to_expr(In("id", ("a", "b"), negate=True)) == 'id not in ["a", "b"]'
    assert to_expr(Compare("id", "gte", "k")) == 'id >= "k"'
    assert id_in(["x", "y"]) == 'id in ["x", "y"]'
    assert to_expr(Compare("source", "eq", "a.pdf")) == 'source == "a.pdf"'
    assert to_expr(In("source", ("a.pdf", "b.pdf"))) == 'source in ["a.pdf", "b.pdf"]'
    # Rows without a string source hold "" in the column: only the marker keeps them out.
    assert to_expr(Compare("source", "eq", "")) == '(has_source and source == "")'
    assert to_expr(Compare("source", "lt", "b")) == '(has_source and source < "b")'
    with pytest.raises(InvalidInputError):
        to_expr(Compare("id", "eq", 3))
    with pytest.raises(InvalidInputError):
        id_in([])


def test_source_ne_nin_and_non_string_values_read_the_json() -> None:
    assert to_expr(Compare("source", "ne", "a")).startswith('(exists kinds["source"] and not ')
    assert 'metadata["source"] == 1' in to_expr(Compare("source", "eq", 1))
    assert "kinds" in to_expr(In("source", ("a", 1)))


def test_metadata_comparisons_are_guarded_by_the_stored_kind() -> None:
    assert to_expr(Compare("n", "eq", 1)) == '(kinds["n"] == "n" and (metadata["n"] == 1))'
    assert to_expr(Compare("f", "eq", True)) == '(kinds["f"] == "b" and (metadata["f"] == true))'
    assert to_expr(Compare("n", "ne", 1)) == (
        '(exists kinds["n"] and not (kinds["n"] == "n" and (metadata["n"] == 1)))'
    )
    assert to_expr(Compare("d", "gt", "2024")) == '(kinds["d"] == "s" and metadata["d"] > "2024")'
    # `in` on a JSON path is not accepted by Milvus Lite: membership is a chain of ==, grouped by type.
    assert to_expr(In("x", ("a", 1, "b"))) == (
        '((kinds["x"] == "s" and (metadata["x"] == "a" or metadata["x"] == "b"))'
        ' or (kinds["x"] == "n" and (metadata["x"] == 1)))'
    )
    assert to_expr(In("x", ("a",), negate=True)).startswith('(exists kinds["x"] and not ')
    both = to_expr(And((Compare("a", "eq", "x"), Or((Compare("id", "eq", "i"), Compare("b", "lt", 2))))))
    assert both.startswith("((kinds") and ' and (id == "i" or (kinds["b"] == "n"' in both


def test_field_names_are_quoted_too() -> None:
    assert to_expr(Compare("naïve.key-1", "eq", "v")) == (
        '(kinds["naïve.key-1"] == "s" and (metadata["naïve.key-1"] == "v"))'
    )


def test_invalid_filter_values_are_rejected_before_any_io() -> None:
    with pytest.raises(InvalidInputError):
        to_expr(Compare("flag", "gt", False))
    for bad in (math.nan, math.inf, 2**64):
        with pytest.raises(InvalidInputError):
            to_expr(Compare("n", "gte", bad))
        with pytest.raises(InvalidInputError):
            to_expr(In("n", (1, bad)))
    with pytest.raises(InvalidInputError):
        to_expr(In("source", ("ok", "\udfff")))


def test_kind_of_tells_booleans_from_numbers() -> None:
    assert [kind_of(v) for v in (True, 1, 1.5, "x", None, [1], {"a": 1})] == [
        "b",
        "n",
        "n",
        "s",
        "z",
        "a",
        "o",
    ]


# --- construction ----------------------------------------------------------------------------------------


def test_backend_satisfies_the_protocol_and_declares_capabilities(tmp_path: Path) -> None:
    backend = MilvusBackend(str(tmp_path / "x.db"))
    assert isinstance(backend, VectorStoreBackend)
    assert backend.supports_filters is True
    assert backend.supports_hybrid is True  # Milvus's BM25 function (tests/stores/test_keyword_milvus.py)


def test_construction_does_no_io_and_parses_uris_and_names(tmp_path: Path) -> None:
    target = tmp_path / "not" / "yet.db"
    lite = MilvusBackend(str(target), collection_name="docs_v2", dimension=8)
    assert not (tmp_path / "not").exists()
    assert lite.path == str(target)
    assert lite.url is None
    assert lite.dimension == 8
    assert lite.index_type == "FLAT"
    assert MilvusBackend("milvus://db.example:19530").url == "http://db.example:19530"
    assert MilvusBackend(f"milvus://{target}").path == str(target)
    server = MilvusBackend("https://in01.zillizcloud.com:19538", token="t")
    assert (server.url, server.path, server.index_type) == (
        "https://in01.zillizcloud.com:19538",
        None,
        "AUTOINDEX",
    )
    assert "s3cret" not in repr(MilvusBackend("https://user:s3cret@host:19530"))
    for bad in ["", "docs-v2", "a b", "../x", "naïve", "1abc", "x;drop"]:
        with pytest.raises(InvalidInputError):
            MilvusBackend(str(target), collection_name=bad)
    with pytest.raises(InvalidInputError):
        MilvusBackend(str(target), dimension=0)
    with pytest.raises(ConfigurationError):
        MilvusBackend("milvus://")
    with pytest.raises(ConfigurationError):
        MilvusBackend(str(tmp_path / "dir"))


def test_importing_the_backend_does_not_import_pymilvus() -> None:
    code = "import sys, mini, mini.stores.milvus; assert 'pymilvus' not in sys.modules, 'pymilvus imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_registry_and_facade_pick_milvus_for_db_paths(tmp_path: Path) -> None:
    store = VectorStore(uri=str(tmp_path / "f.db"), collection_name="f")
    assert isinstance(store.backend, MilvusBackend)


# --- Milvus Lite end to end ------------------------------------------------------------------------------


async def test_search_returns_best_first_and_an_exact_match_scores_one(make: Make) -> None:
    backend = make()
    await backend.insert(
        [Record(f"v{i}", v, f"t{i}") for i, v in enumerate([[1, 0, 0], [1, 1, 0], [0, 1, 0], [-1, 0, 0]])]
    )
    hits = await backend.search([1.0, 0.0, 0.0], top_k=4)
    assert [h.id for h in hits] == ["v0", "v1", "v2", "v3"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-6)
    assert hits[1].score == pytest.approx(1 / np.sqrt(2), abs=1e-6)
    assert hits[3].score == pytest.approx(-1.0, abs=1e-6)
    assert len(await backend.search([1.0, 0.0, 0.0], top_k=2)) == 2
    with pytest.raises(InvalidInputError):
        await backend.search([1.0, 0.0, 0.0], top_k=0)


async def test_metadata_round_trips_exactly(make: Make) -> None:
    backend = make()
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
    assert (await backend.get(ids=["a"]))[0].metadata == metadata


async def test_upsert_twice_keeps_the_count_and_updates_text(make: Make) -> None:
    backend = make()
    await backend.upsert(rows(5))
    await backend.upsert([Record(r.id, r.vector, r.text + " v2", r.metadata) for r in rows(5)])
    assert await backend.count() == 5
    assert all(h.text.endswith(" v2") for h in await backend.search(unit(0), top_k=5))
    await backend.upsert([*rows(5), Record("new", unit(1), "new")])
    assert await backend.count() == 6


async def test_insert_raises_duplicate_id_error_listing_existing_ids_and_writes_nothing(make: Make) -> None:
    backend = make()
    await backend.insert(rows(3))
    with pytest.raises(DuplicateIdError) as info:
        await backend.insert([Record("fresh", unit(0), "x"), *rows(3)[1:]])
    assert info.value.ids == ["r1", "r2"]
    assert await backend.count() == 3
    assert await backend.existing_ids(["fresh", "r0"]) == {"r0"}
    with pytest.raises(InvalidInputError):
        await backend.insert([Record("a", unit(0), "x"), Record("a", unit(1), "y")])


async def test_delete_by_ids_and_by_filter_returns_rows_deleted(make: Make) -> None:
    backend = make()
    await backend.insert(rows(9))
    assert await backend.delete(ids=["r0", "r1", "missing"]) == 2
    assert await backend.delete(filter=parse_filter({"source": "s2"})) == 3  # r2, r5, r8
    both = await backend.delete(ids=["r3", "r4"], filter=parse_filter({"n": {"$gte": 4}}))
    assert both == 4  # r3, r4, r6, r7: each counted once
    assert await backend.count() == 0
    assert await backend.delete(ids=[]) == 0


async def test_count_supports_filters(make: Make) -> None:
    backend = make()
    await backend.insert(rows(10))
    assert await backend.count() == 10
    assert await backend.count(parse_filter({"source": "s1"})) == 3
    assert await backend.count(parse_filter({"n": {"$gte": 3, "$lt": 7}})) == 4
    assert await backend.count(parse_filter({"$or": [{"n": 0}, {"source": "s2"}]})) == 4


async def test_reads_of_a_missing_collection_are_empty_and_create_nothing(make: Make, tmp_path: Path) -> None:
    backend = make()
    assert await backend.search(unit(0), top_k=3) == []
    assert await backend.search_many([unit(0), unit(1)], top_k=3) == [[], []]
    assert await backend.count() == 0
    assert await backend.existing_ids(["a"]) == set()
    assert await backend.delete(ids=["a"]) == 0
    assert await backend.get() == []
    await backend.drop()  # dropping a collection that never existed is fine
    assert backend.dimension is None

    def collections() -> list[str]:
        with lite_client(tmp_path / "m.db") as client:
            return list(client.list_collections())

    assert await asyncio.to_thread(collections) == []


async def test_dimension_mismatches_raise_on_write_and_search(make: Make) -> None:
    configured = make(dimension=4)
    with pytest.raises(DimensionMismatchError):
        await configured.insert([Record("a", [1.0, 0.0, 0.0], "x")])
    assert await configured.count() == 0  # refused before creating a collection of the wrong size
    assert configured.dimension == 4
    await configured.insert(rows(2))
    with pytest.raises(DimensionMismatchError):
        await configured.insert([Record("b", [1.0] * 5, "x")])
    with pytest.raises(DimensionMismatchError):
        await configured.upsert([Record("b", [1.0] * 3, "x")])
    with pytest.raises(DimensionMismatchError):
        await configured.insert([Record("c", unit(0), "x"), Record("d", [1.0] * 3, "y")])
    with pytest.raises(DimensionMismatchError):
        await configured.search([1.0, 0.0], top_k=1)
    # The existing collection's schema wins over a different configured dimension.
    other = make(dimension=8)
    assert await other.count() == 2
    assert other.dimension == 4
    with pytest.raises(DimensionMismatchError):
        await other.search([0.0] * 8, top_k=1)


async def test_bad_rows_are_rejected_as_invalid_input_before_writing(make: Make) -> None:
    backend = make()
    bad_rows = [
        Record("a", [1.0, float("nan"), 0.0, 0.0], "x"),
        Record("a", unit(0), "x", {"tags": {"a", "b"}}),
        Record("a", unit(0), "x", {"score": float("inf")}),
        Record("a", unit(0), "x", {"huge": [2**64]}),
        Record("a", unit(0), "é" * 40_000),  # 80,000 UTF-8 bytes: more than a Milvus VARCHAR holds
        Record("x" * 513, unit(0), "x"),
        Record("a", unit(0), "x", {"source": "s" * 70_000}),
        Record("a", unit(0), "bad \ud800"),
    ]
    for record in bad_rows:
        with pytest.raises(InvalidInputError):
            await backend.insert([record])
    assert await backend.count() == 0
    await backend.insert([Record("a", np.ones(4, dtype=np.float64), "é" * 30_000, {"page": np.int64(3)})])
    hit = (await backend.search(unit(0), top_k=1))[0]
    assert hit.metadata == {"page": 3}
    assert len(hit.text) == 30_000


async def test_drop_then_write_again_with_another_dimension(make: Make) -> None:
    backend = make()
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


async def test_aclose_releases_the_client_and_the_next_call_reopens(make: Make) -> None:
    backend = make()
    await backend.insert(rows(2))
    await backend.aclose()
    reopened = make()
    assert reopened.dimension is None  # nothing read yet
    assert await backend.count() == 2
    assert await reopened.count() == 2
    assert reopened.dimension == 4


def test_another_process_reopens_the_file_and_reads_it(tmp_path: Path) -> None:
    # Milvus Lite allows one process per file: the writer exits, then a new process must load the collection.
    script = textwrap.dedent(
        """
        import asyncio, sys
        from mini.stores.base import Record
        from mini.stores.milvus import MilvusBackend
        async def main():
            backend = MilvusBackend(sys.argv[1], collection_name="t")
            if sys.argv[2] == "write":
                await backend.insert([Record(f"r{i}", [float(i == j) for j in range(6)], "t", {"n": i}) for i in range(4)])
            else:
                hit = (await backend.search([0.0, 1.0, 0, 0, 0, 0], top_k=1))[0]
                print(await backend.count(), backend.dimension, hit.id, hit.metadata["n"])
        asyncio.run(main())
        """
    )
    path = str(tmp_path / "p.db")
    subprocess.run([sys.executable, "-c", script, path, "write"], check=True, timeout=60)
    out = subprocess.run(
        [sys.executable, "-c", script, path, "read"], check=True, timeout=60, capture_output=True, text=True
    )
    assert out.stdout.split() == ["4", "6", "r1", "1"]


async def test_concurrent_first_writes_do_not_fail(make: Make) -> None:
    for attempt in range(3):
        name = f"race{attempt}"
        shared = make(name)
        others = [make(name) for _ in range(2)]
        await asyncio.gather(
            shared.insert(rows(3, prefix="a")),
            shared.upsert(rows(3, prefix="b")),
            others[0].insert(rows(3, prefix="c")),
            others[1].upsert(rows(3, prefix="d")),
        )
        assert await make(name).count() == 12


# --- filters on Milvus Lite ------------------------------------------------------------------------------

ADVERSARIAL = [
    "it's",
    'say "hi"',
    "back\\slash",
    "' or 1==1 or '",
    '" or 1==1 or "',
    "a\nb",
    "naïve 😀",
    "%_*",
    "x' OR '1'='1",
    "a\\",
    "\\'",
    '\\"',
    "line\r\nbreak\ttab",
    "\x01\x1f\x7f",
    "",
    " ",
    "NULL",
    "true",
    "1",
    'metadata["name"]',
    "[1]",
]


async def test_adversarial_string_values_match_exactly_their_own_rows(make: Make) -> None:
    backend = make()
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
    assert await ids_for(backend, {"id": "v3"}) == {"v3"}


# Heterogeneous values under the same keys; the reference semantics are `filters.matches`.
SEMANTIC_ROWS: list[dict[str, Any]] = [
    {"year": 2019, "lang": "en", "score": 0.5, "tags": ["a", "b"], "date": "2024-01-01", "source": "a.md"},
    {"year": 2020, "lang": "de", "score": 1, "tags": "a", "date": "2024-01-01 late", "source": ""},
    {"year": 2021.0, "lang": "fr", "score": 2.75, "tags": {"a": 1}, "date": "2024", "source": 7},
    {"year": 2022.5, "lang": "en", "score": None, "date": "2023-12-31", "source": None},
    {"year": "2020", "lang": ["en"], "score": "1", "date": 2024, "source": "b.md"},
    {"year": None, "lang": {"en": True}, "tags": None, "date": 'a"b', "flag": True},
    {"lang": "EN", "date": "a#", "flag": 1, "big": 2**62 + 1},
    {"flag": False, "big": 2**62},
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
    {"source": ""},
    {"source": {"$lt": "b"}},
    {"source": {"$in": ["", "b.md"]}},
    {"source": {"$ne": "a.md"}},
    {"source": {"$nin": ["", 7]}},
    {"source": 7},
    {"flag": True},
    {"flag": 1},
    {"flag": 1.0},
    {"flag": {"$ne": True}},
    {"flag": {"$ne": 1}},
    {"flag": {"$in": [0, True]}},
    {"flag": {"$nin": [False, 1]}},
    {"big": 2**62 + 1},
    {"big": {"$gt": 2**62}},
    {"missing": "x"},
    {"missing": {"$ne": "x"}},
    {"missing": {"$nin": [1]}},
    {"$or": [{"year": 2019}, {"lang": "fr"}]},
    {"$and": [{"lang": "en"}, {"$or": [{"year": {"$lt": 2020}}, {"score": 2.75}]}]},
    {"$or": [{"$and": [{"year": {"$gte": 2020}}, {"lang": {"$ne": "de"}}]}, {"missing": {"$ne": 1}}]},
]


async def test_filters_match_the_reference_semantics_on_mixed_type_metadata(make: Make) -> None:
    backend = make()
    await backend.insert([Record(f"m{i}", unit(i), "x", meta) for i, meta in enumerate(SEMANTIC_ROWS)])
    for spec in SEMANTIC_FILTERS:
        parsed = parse_filter(spec)
        expected = {f"m{i}" for i, meta in enumerate(SEMANTIC_ROWS) if matches(parsed, meta)}
        assert await ids_for(backend, spec) == expected, spec
        assert await backend.count(parsed) == len(expected), spec
        assert {r.id for r in await backend.get(filter=parsed)} == expected, spec


async def test_booleans_and_numbers_are_different_types_in_filters(make: Make) -> None:
    backend = make()
    values = [True, False, 1, 0, 1.0, "true", "1"]
    await backend.insert([Record(f"b{i}", unit(i), "x", {"flag": v}) for i, v in enumerate(values)])
    assert await ids_for(backend, {"flag": True}) == {"b0"}
    assert await ids_for(backend, {"flag": False}) == {"b1"}
    assert await ids_for(backend, {"flag": 1}) == {"b2", "b4"}
    assert await ids_for(backend, {"flag": {"$in": [0, "1"]}}) == {"b3", "b6"}
    assert await ids_for(backend, {"flag": "true"}) == {"b5"}
    assert await ids_for(backend, {"flag": {"$ne": True}}) == {f"b{i}" for i in range(1, 7)}
    assert await ids_for(backend, {"flag": {"$ne": 1}}) == {"b0", "b1", "b3", "b5", "b6"}
    # Ranges compare numbers with numbers only (filters.matches would let True > 0 through, a Python quirk).
    assert await ids_for(backend, {"flag": {"$gte": 0}}) == {"b2", "b3", "b4"}


# --- search, get, replace --------------------------------------------------------------------------------


async def test_search_many_returns_one_ranking_per_vector_like_single_searches(make: Make) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((300, 16)).astype(np.float32)
    backend = make()
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
        expected = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
        assert ranking[0].score == pytest.approx(max(expected[i] for i in range(1, 300, 3)), abs=1e-5)
    assert await backend.search_many([], top_k=3) == []
    with pytest.raises(InvalidInputError):
        await backend.search([float("nan")] * 16, top_k=1)


async def test_concurrent_searches_share_store_calls(make: Make) -> None:
    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((200, 8)).astype(np.float32)
    backend = make()
    await backend.insert([Record(f"r{i}", row, "t") for i, row in enumerate(vectors)])
    before = backend._searches.batches
    results = await asyncio.gather(*(backend.search(vectors[i], top_k=1) for i in range(64)))
    assert [hits[0].id for hits in results] == [f"r{i}" for i in range(64)]  # each caller got its own answer
    assert backend._searches.batches - before < 64 / 4  # and they rode along in a few multi-vector searches


async def test_get_by_ids_and_filter_with_and_without_vectors(make: Make) -> None:
    backend = make()
    await backend.upsert(rows(2500))  # more ids than one id predicate holds, more rows than one page
    assert await backend.get(ids=[]) == []
    wanted = [f"r{i}" for i in range(0, 2500, 2)]
    got = await backend.get(ids=wanted)
    assert sorted(r.id for r in got) == sorted(wanted)
    assert all(r.vector is None for r in got)
    assert {r.text for r in got} >= {"text 0", "text 2"}
    one = (await backend.get(ids=["r5"], include_vectors=True))[0]
    assert one.metadata == {"source": "s2", "n": 5}
    assert one.vector.dtype == np.float32
    np.testing.assert_array_equal(one.vector, np.asarray(unit(5), dtype=np.float32))
    both = await backend.get(ids=["r0", "r1", "r3"], filter=parse_filter({"source": "s0"}))
    assert sorted(r.id for r in both) == ["r0", "r3"]
    by_filter = await backend.get(filter=parse_filter({"n": {"$lt": 3}}))
    assert sorted(r.id for r in by_filter) == ["r0", "r1", "r2"]
    assert len(await backend.get(limit=10)) == 10
    assert len(await backend.get(ids=wanted, limit=1200)) == 1200
    everything = await backend.get()
    assert len(everything) == 2500
    assert len({r.id for r in everything}) == 2500
    assert len(await backend.get(filter=parse_filter({"source": "s1"}), include_vectors=True)) == 833
    assert await make(name="missing").get() == []


async def test_replace_upserts_then_deletes_the_rest_of_the_scope(make: Make) -> None:
    backend = make()
    await backend.upsert(rows(6))  # sources s0, s1, s2 with two rows each
    new = [
        Record("r0", unit(1), "text 0 again", {"source": "s0"}),
        Record("x", unit(2), "new", {"source": "s0"}),
    ]
    assert await backend.replace(new, scope=Compare("source", "eq", "s0")) == 1  # r3 was in scope
    in_scope = await backend.get(filter=parse_filter({"source": "s0"}))
    assert sorted((r.id, r.text) for r in in_scope) == [("r0", "text 0 again"), ("x", "new")]
    assert await backend.count() == 6  # s1 and s2 untouched: 4 + 2 new
    assert await backend.replace([], scope=Compare("source", "eq", "s1")) == 2
    assert await backend.count(parse_filter({"source": "s1"})) == 0


# --- loops, facade, loop lag -----------------------------------------------------------------------------


def test_one_backend_works_from_successive_loops_other_threads_and_the_portal(tmp_path: Path) -> None:
    backend = MilvusBackend(str(tmp_path / "loops.db"), collection_name="t")
    asyncio.run(backend.insert(rows(2)))
    assert asyncio.run(backend.count()) == 2
    _portal.run(backend.insert(rows(2, prefix="p")))
    assert [h.id for h in asyncio.run(backend.search(unit(0), top_k=1))] in (["r0"], ["p0"])
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
    _portal.run(backend.aclose())


def test_facade_sync_twins_work_end_to_end(tmp_path: Path) -> None:
    store = VectorStore(uri=str(tmp_path / "facade.db"), collection_name="t")
    metadata = [
        {"source": "a.pdf", "page": 1},
        {"source": "b.pdf", "page": 2},
        {"source": "a.pdf", "page": 3},
    ]
    ids = store.insert([unit(0), unit(1), unit(2)], ["alpha", "beta", "gamma"], metadata)
    assert store.dimension == 4
    with pytest.raises(DuplicateIdError):
        store.insert([unit(0)], ["alpha"], [metadata[0]])
    assert store.upsert([unit(0)], ["alpha"], [metadata[0]]) == ids[:1]
    hits = store.search(unit(1), top_k=2)
    assert hits[0].text == "beta"
    assert hits[0].score == pytest.approx(1.0, abs=1e-6)
    filtered = store.search([1.0, 0.0, 0.5, 0.0], top_k=5, filter={"source": "a.pdf"})
    assert [h.text for h in filtered] == ["alpha", "gamma"]
    assert store.count(filter={"page": {"$gte": 2}}) == 2
    assert store.replace({"source": "b.pdf"}, [unit(3)], ["delta"], [{"source": "b.pdf"}]) == 1
    assert sorted(r.text for r in store.get(filter={"source": "b.pdf"})) == ["delta"]
    assert store.delete(filter={"source": "a.pdf"}) == 2
    assert store.count() == 1
    store.drop()
    store.close()


async def test_64_concurrent_searches_over_2k_rows_keep_the_loop_responsive(
    make: Make, caplog: pytest.LogCaptureFixture, lag_probe: LoopLagProbe
) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((2_000, 384)).astype(np.float32)
    records = [Record(f"id{i}", row, "t", {"source": f"d{i % 50}"}) for i, row in enumerate(vectors)]
    queries = rng.standard_normal((64, 384)).astype(np.float32)
    backend = make(dimension=384)
    await backend.insert(records)
    # Debug mode makes asyncio log each callback that holds the loop > 50 ms: it names the culprit if this fails.
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.05
    caplog.set_level(logging.WARNING, logger="asyncio")
    # Milvus Lite's server runs in this process (threads competing for the GIL with the loop); a call of ours
    # that blocked the loop would show in every attempt, so one clean attempt of three proves the loop free.
    attempts: list[str] = []
    try:
        for attempt in range(3):
            caplog.clear()
            probe = lag_probe if attempt == 0 else LoopLagProbe()
            async with probe:
                results = await asyncio.gather(*(backend.search(q, top_k=5) for q in queries))
                filtered = await asyncio.gather(
                    *(backend.search(q, top_k=5, filter=parse_filter({"source": "d3"})) for q in queries[:16])
                )
            assert all(len(hits) == 5 for hits in results)
            assert all(h.source == "d3" for hits in filtered for h in hits)
            slow = [r.getMessage() for r in caplog.records if "took" in r.getMessage()]
            attempts.append(f"{probe.summary()}; slow callbacks: {slow}")
            if probe.own_max_ms < 50:
                break
        else:
            pytest.fail("\n".join(attempts))
    finally:
        loop.set_debug(False)
    assert (await backend.search(vectors[17], top_k=1))[0].id == "id17"


# --- errors and secrets ----------------------------------------------------------------------------------


async def test_map_milvus_errors_translates_chains_and_redacts() -> None:
    from pymilvus.exceptions import MilvusException

    original = MilvusException(message="boom with sk-secret-123 inside")
    with pytest.raises(StoreError) as info, map_milvus_errors("search", secret="sk-secret-123"):
        raise original
    assert info.value.__cause__ is original
    assert str(info.value) == "Milvus search failed: boom with *** inside"
    with pytest.raises(DuplicateIdError), map_milvus_errors("insert"):
        raise DuplicateIdError(["x"])
    with pytest.raises(KeyError), map_milvus_errors("insert"):
        raise KeyError("a bug of ours is not a store failure")


async def test_unreachable_servers_fail_fast_without_leaking_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = "sk-secret-123"
    refused = MilvusBackend("http://127.0.0.1:1", collection_name="docs", token=token)
    assert token not in repr(refused)
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        await refused.count()
    assert time.monotonic() - started < 5
    assert token not in str(info.value)
    assert str(info.value).startswith("Milvus open collection failed")
    # A server that accepts connections but never answers: the connect timeout ends the wait.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        port = silent.getsockname()[1]
        hanging = MilvusBackend(f"milvus://127.0.0.1:{port}", token=token, connect_timeout=1.0)
        started = time.monotonic()
        with pytest.raises(StoreError) as info:
            await hanging.search([1.0, 0.0], top_k=1)
        assert time.monotonic() - started < 5
        assert token not in str(info.value) and token not in repr(hanging)
        await hanging.aclose()
    finally:
        silent.close()
    await refused.aclose()
    assert token not in caplog.text


async def test_lite_refuses_a_file_another_process_holds(tmp_path: Path) -> None:
    path = str(tmp_path / "held.db")
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys, time; from milvus_lite.db import MilvusLite; MilvusLite(sys.argv[1]); "
        "print('ready', flush=True); time.sleep(60)",
        path,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 60) == b"ready\n"
        with pytest.raises(StoreError, match=r"one process per \.db path"):
            await MilvusBackend(path).count()
    finally:
        holder.kill()
        await holder.wait()


async def test_a_foreign_collection_raises_store_error(make: Make, tmp_path: Path) -> None:
    def create() -> None:  # pymilvus's quick setup: id and vector fields, no metadata/kinds
        with lite_client(tmp_path / "m.db") as client:
            client.create_collection("t", dimension=4, id_type="string", max_length=64)

    backend = make()
    await backend.count()  # starts this file's Lite server process
    await asyncio.to_thread(create)
    await backend.aclose()
    with pytest.raises(StoreError, match="not created by this backend"):
        await backend.count()
