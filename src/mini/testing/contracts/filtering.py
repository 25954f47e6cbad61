"""Store contract checks for metadata filters: the reference semantics of `mini.stores.filters.matches`."""

from __future__ import annotations

from typing import Any

from mini.errors import UnsupportedFilterError
from mini.stores.base import Record, VectorStoreBackend
from mini.stores.filters import matches, parse_filter
from mini.testing.contracts._common import BackendFactory, has_string_range, ids_for, parsed, unit

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

# Mixed types under the same keys: numbers, strings, booleans, nulls and objects (lists have their own check).
# Booleans sit only under keys no numeric range reads here: see BOOLEAN_RANGES.
MIXED_ROWS: list[dict[str, Any]] = [
    {"year": 2019, "lang": "en", "score": 0.5, "date": "2024-01-01", "source": "a.md", "flag": True},
    {
        "year": 2020,
        "lang": "de",
        "score": 1,
        "tags": "a",
        "date": "2024-01-01 late",
        "source": "",
        "flag": False,
    },
    {"year": 2021.0, "lang": "fr", "score": 2.75, "tags": {"a": 1}, "date": "2024", "source": 7, "flag": 1},
    {"year": 2022.5, "lang": "en", "score": None, "date": "2023-12-31", "source": None, "flag": 0},
    {"year": "2020", "lang": None, "score": "1", "date": 2024, "source": "b.md", "flag": 1.0},
    {"year": None, "lang": {"en": True}, "score": {"a": 1}, "tags": None, "date": 'a"b', "flag": "true"},
    {"lang": "EN", "date": "a#", "flag": "1", "big": 2**62 + 1},
    {"tags": "b", "big": 2**62},
    {},
]

MIXED_FILTERS: list[dict[str, Any]] = [
    {"year": 2020},
    {"year": 2021},
    {"year": "2020"},
    {"year": True},
    {"year": {"$ne": 2020}},
    {"year": {"$gte": 2020}},
    {"year": {"$gt": 2020, "$lte": 2022.5}},
    {"year": {"$lt": 2021}},
    {"year": {"$in": [2019, 2021, "2020"]}},
    {"year": {"$nin": [2019, 2021]}},
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
    {"source": 7},
    {"source": {"$lt": "b"}},
    {"source": {"$in": ["", "b.md"]}},
    {"source": {"$ne": "a.md"}},
    {"source": {"$nin": ["", 7]}},
    {"flag": True},
    {"flag": False},
    {"flag": 1},
    {"flag": 1.0},
    {"flag": "true"},
    {"flag": {"$ne": True}},
    {"flag": {"$ne": 1}},
    {"flag": {"$in": [0, True]}},
    {"flag": {"$in": [0, "1"]}},
    {"flag": {"$nin": [False, 1]}},
    {"big": 2**62 + 1},
    {"big": {"$gt": 2**62}},
    {"missing": "x"},
    {"missing": {"$ne": "x"}},
    {"missing": {"$nin": [1]}},
    {"id": "m1"},
    {"id": {"$nin": ["m1", "m2"]}},
    {"$or": [{"year": 2019}, {"lang": "fr"}]},
    {"$and": [{"lang": "en"}, {"$or": [{"year": {"$lt": 2020}}, {"score": 2.75}]}]},
    {"$or": [{"$and": [{"year": {"$gte": 2020}}, {"lang": {"$ne": "de"}}]}, {"missing": {"$ne": 1}}]},
]

# Numeric ranges over a key that also holds booleans. `filters` documents that ranges compare numbers with
# numbers, but `matches` lets Python order True and False as 1 and 0; this follows the documentation.
BOOLEAN_ROWS: list[dict[str, Any]] = [
    {"n": True},
    {"n": False},
    {"n": 1},
    {"n": 0},
    {"n": 0.5},
    {"n": "1"},
    {},
]
BOOLEAN_RANGES: list[dict[str, Any]] = [
    {"n": {"$gt": 0}},
    {"n": {"$gte": 1}},
    {"n": {"$lt": 1}},
    {"n": {"$lte": 0}},
    {"n": {"$gte": 0, "$lte": 1}},
]

# Lists are values, not sets of values: a list never equals a scalar (it still has the key, so $ne matches).
LIST_ROWS: list[dict[str, Any]] = [{"tags": ["a", "b"], "lang": ["en"]}, {"tags": "a", "lang": "en"}, {}]
LIST_FILTERS: list[dict[str, Any]] = [
    {"tags": "a"},
    {"tags": {"$ne": "a"}},
    {"tags": {"$in": ["a", "b"]}},
    {"tags": {"$nin": ["b"]}},
    {"lang": "en"},
    {"lang": {"$gte": "a"}},
]

# Values that break naive quoting in SQL, Milvus expressions, JSON paths or LIKE patterns.
ADVERSARIAL = [
    "O'Brien",
    "it's",
    'say "hi"',
    "x' OR '1'='1",
    "' or 1==1 or '",
    '" or 1==1 or "',
    "or 1==1",
    "back\\slash",
    "a\\",
    "\\'",
    '\\"',
    "x\\' OR 1=1 --",
    "%",
    "_",
    "a%b",
    "a_b",
    "%_*",
    "Zürich",
    "naïve 😀",
    "🎉 party",
    '"quoted"',
    "a\nb",
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


async def _check_reference(
    make: BackendFactory, name: str, data: list[dict[str, Any]], specs: list[dict[str, Any]], prefix: str
) -> None:
    """On a collection holding `data`: search, count and get agree with `matches` for each spec, or refuse a
    string range it cannot express."""
    backend = make(name)
    await _insert(backend, data, prefix)
    for spec in specs:
        node = parsed(spec)
        expected = {
            f"{prefix}{i}" for i, meta in enumerate(data) if matches(node, {**meta, "id": f"{prefix}{i}"})
        }
        try:
            got = await ids_for(backend, spec)
        except UnsupportedFilterError:
            assert has_string_range(node), spec  # only string ranges are optional
            continue
        assert got == expected, spec
        assert await backend.count(node) == len(expected), spec
        assert {r.id for r in await backend.get(filter=node)} == expected, spec


async def _insert(backend: VectorStoreBackend, data: list[dict[str, Any]], prefix: str) -> None:
    await backend.insert([Record(f"{prefix}{i}", unit(i), f"x{i}", meta) for i, meta in enumerate(data)])


async def check_filters_follow_the_reference_semantics(make: BackendFactory) -> None:
    await _check_reference(make, "filters", FILTER_ROWS, FILTERS, "f")


async def check_string_ranges_are_right_or_refused(make: BackendFactory) -> None:
    await _check_reference(make, "ranges", FILTER_ROWS, STRING_RANGES, "f")


async def check_mixed_types_under_one_key_follow_the_reference(make: BackendFactory) -> None:
    await _check_reference(make, "mixed", MIXED_ROWS, MIXED_FILTERS, "m")


async def check_numeric_ranges_skip_booleans(make: BackendFactory) -> None:
    """Ranges order numbers only: a stored True/False is never inside one (it is not 1/0, as in `matches`)."""
    backend = make("boolranges")
    await _insert(backend, BOOLEAN_ROWS, "b")
    for spec in BOOLEAN_RANGES:
        node = parsed(spec)
        numbers = [{} if isinstance(meta.get("n"), bool) else meta for meta in BOOLEAN_ROWS]
        expected = {f"b{i}" for i, meta in enumerate(numbers) if matches(node, meta)}
        assert await ids_for(backend, spec) == expected, spec
        assert await backend.count(node) == len(expected), spec


async def check_list_values_never_equal_scalars(make: BackendFactory) -> None:
    """Not in `CONTRACT_CHECKS`: Qdrant matches list values element-wise (see `mini.stores.qdrant`)."""
    await _check_reference(make, "lists", LIST_ROWS, LIST_FILTERS, "l")


async def check_adversarial_values_match_only_their_own_rows(make: BackendFactory) -> None:
    backend = make("inject")
    records = [Record(f"v{i}", unit(i), f"t{i}", {"name": v, "source": v}) for i, v in enumerate(ADVERSARIAL)]
    records += [Record("num", unit(0), "n", {"name": 1, "source": 1}), Record("nokey", unit(0), "none", {})]
    await backend.insert(records)
    having_key = {r.id for r in records} - {"nokey"}
    for i, value in enumerate(ADVERSARIAL):
        for field in ("name", "source"):
            own, why = {f"v{i}"}, (field, value)
            assert await ids_for(backend, {field: value}) == own, why
            assert await ids_for(backend, {field: {"$in": [value, "\x00never"]}}) == own, why
            # $ne/$nin: every row that has the key and another value (the row without the key never matches).
            assert await ids_for(backend, {field: {"$ne": value}}) == having_key - own, why
            assert await backend.count(parse_filter({field: {"$nin": [value]}})) == len(having_key) - 1, why
            assert await backend.count(parse_filter({"id": f"v{i}", field: value})) == 1, why
    assert await ids_for(backend, {"name": 1}) == {"num"}
    assert await ids_for(backend, {"source": 1}) == {"num"}
    # Ids are values too.
    as_ids = [value for value in ADVERSARIAL if value]
    await backend.insert([Record(value, unit(1), "by id") for value in as_ids])
    for value in as_ids:
        assert await ids_for(backend, {"id": value}) == {value}, value
        assert [r.id for r in await backend.get(ids=[value])] == [value], value


async def check_booleans_and_numbers_are_different_types(make: BackendFactory) -> None:
    backend = make("types")
    # One key per type first, so backends with typed payload indexes can follow; True must still not equal 1.
    await backend.insert(
        [
            Record("t", unit(0), "x", {"flag": True, "num": 1}),
            Record("f", unit(1), "x", {"flag": False, "num": 0}),
            Record("one", unit(2), "x", {"num": 1.0}),
        ]
    )
    assert await ids_for(backend, {"flag": True}) == {"t"}
    assert await ids_for(backend, {"flag": False}) == {"f"}
    assert await ids_for(backend, {"num": 1}) == {"t", "one"}
    assert await ids_for(backend, {"flag": 1}) == set()
    assert await ids_for(backend, {"num": True}) == set()
    assert await ids_for(backend, {"num": {"$in": [0, True]}}) == {"f"}
