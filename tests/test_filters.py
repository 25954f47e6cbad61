"""The filter dict form: validation errors before any I/O, and reference semantics."""

from __future__ import annotations

import pytest

from mini.errors import InvalidInputError
from mini.stores.filters import And, Compare, In, Or, matches, parse_filter


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
