"""The filter dict form: validation errors before any I/O, and reference semantics."""

from __future__ import annotations

from typing import Any

import pytest

from mini.errors import InvalidInputError
from mini.stores.filters import (
    MAX_FILTER_CONDITIONS,
    MAX_FILTER_DEPTH,
    MAX_FILTER_VALUES,
    And,
    Compare,
    In,
    Or,
    matches,
    parse_filter,
)


def test_plain_keys_are_equalities_anded_together() -> None:
    assert parse_filter({"source": "a.pdf", "year": 2020}) == And(
        (Compare("source", "eq", "a.pdf"), Compare("year", "eq", 2020))
    )
    assert parse_filter({"source": "a.pdf"}) == Compare("source", "eq", "a.pdf")


def test_operators_and_boolean_combinations_parse() -> None:
    parsed = parse_filter({"$or": [{"year": {"$gte": 2020, "$lt": 2025}}, {"lang": {"$in": ["en", "de"]}}]})
    assert parsed == Or(
        (And((Compare("year", "gte", 2020), Compare("year", "lt", 2025))), In("lang", ("en", "de")))
    )
    assert parse_filter({"lang": {"$nin": ["fr"]}}) == In("lang", ("fr",), negate=True)


@pytest.mark.parametrize(
    "bad",
    [
        {"year": {"$regex": "x"}},
        {"$or": []},
        {"lang": {"$in": []}},
        {"lang": {"$in": "en"}},
        {"bad field": 1},
        {"x": {"nested": {"dict": 1}}},
        {"x": [1, 2]},
        {"x": None},
        "source = 'a'",
        # Values no engine can compare exactly are refused once, here, for every backend.
        {"x": float("nan")},
        {"x": {"$gte": float("inf")}},
        {"x": {"$in": [1, float("-inf")]}},
        {"x": 2**63},
        {"x": {"$lt": -(2**63) - 1}},
        {"x": "lone \ud800 surrogate"},
        {"$or": [{"x": {"$nin": ["ok", "\udfff"]}}]},
    ],
)
def test_invalid_filters_raise_a_clear_value_error(bad: object) -> None:
    with pytest.raises(InvalidInputError):
        parse_filter(bad)  # type: ignore[arg-type]


def test_values_at_the_limits_are_kept() -> None:
    assert parse_filter({"x": {"$gte": -(2**63), "$lte": 2**63 - 1}}) == And(
        (Compare("x", "gte", -(2**63)), Compare("x", "lte", 2**63 - 1))
    )
    assert parse_filter({"x": 1e308, "s": "Zürich 🎉"}) == And(
        (Compare("x", "eq", 1e308), Compare("s", "eq", "Zürich 🎉"))
    )


def test_empty_filter_means_no_filter() -> None:
    assert parse_filter({}) is None
    assert parse_filter(None) is None


def test_reference_semantics() -> None:
    meta = {"source": "a.pdf", "year": 2021, "lang": "en"}
    assert matches(parse_filter({"year": {"$gte": 2020}}), meta)
    assert not matches(parse_filter({"year": {"$gt": 2021}}), meta)
    assert matches(parse_filter({"$or": [{"lang": "de"}, {"source": "a.pdf"}]}), meta)
    assert not matches(parse_filter({"missing": 1}), meta)
    assert matches(parse_filter({"lang": {"$nin": ["fr"]}}), meta)
    assert not matches(parse_filter({"year": {"$lt": "text"}}), meta)  # incomparable types never match


def nested(levels: int) -> dict[str, Any]:
    """A filter `levels` objects deep: $and and $or alternating around one condition."""
    spec: dict[str, Any] = {"source": "a.md"}
    for level in range(levels - 1):
        spec = {"$and" if level % 2 else "$or": [spec]}
    return spec


def test_a_filter_nested_to_the_limit_is_kept_and_one_level_more_is_refused() -> None:
    assert matches(parse_filter(nested(MAX_FILTER_DEPTH)), {"source": "a.md"})
    with pytest.raises(InvalidInputError, match=f"nested more than {MAX_FILTER_DEPTH} levels"):
        parse_filter(nested(MAX_FILTER_DEPTH + 1))


@pytest.mark.parametrize("levels", [60, 50_000])
def test_a_deeply_nested_filter_is_refused_at_the_limit_without_reading_further(levels: int) -> None:
    # 60 levels reached LanceDB as SQL its parser refused (a 500 echoing the SQL); 50,000 would exhaust the
    # interpreter's recursion if the parser descended before checking.
    with pytest.raises(InvalidInputError, match=f"nested more than {MAX_FILTER_DEPTH} levels"):
        parse_filter(nested(levels))


def test_conditions_and_values_are_bounded() -> None:
    many = {"$or": [{f"f{i}": i} for i in range(MAX_FILTER_CONDITIONS)]}
    assert isinstance(parse_filter(many), Or)
    with pytest.raises(InvalidInputError, match=f"more than {MAX_FILTER_CONDITIONS} conditions"):
        parse_filter({**many, "extra": 1})
    # The library's own widest filter (a delete of 500 sources, matched on two fields) fits.
    sources = [f"s{i}" for i in range(500)]
    assert parse_filter({"$or": [{"origin": {"$in": sources}}, {"source": {"$in": sources}}]}) is not None
    with pytest.raises(InvalidInputError, match=f"more than {MAX_FILTER_VALUES} values"):
        parse_filter({"x": {"$in": list(range(MAX_FILTER_VALUES + 1))}})


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"year": {"$regex": "x"}}, "allowed: $eq, $ne, $gt, $gte, $lt, $lte, $in, $nin"),
        ({"$not": {"year": 1}}, "unknown filter operator '$not'"),
        ({"$where": "1 = 1"}, "unknown filter operator '$where'"),
    ],
)
def test_unknown_operators_are_named_with_what_is_allowed(bad: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        parse_filter(bad)
    assert named in str(refused.value)
