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
    ],
)
def test_invalid_filters_raise_a_clear_value_error(bad: object) -> None:
    with pytest.raises(InvalidInputError):
        parse_filter(bad)  # type: ignore[arg-type]


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
