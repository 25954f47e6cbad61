"""The filter AST -> LanceDB SQL translation as text (no table, no event loop)."""

from __future__ import annotations

import math

import pytest

from mini.errors import InvalidInputError
from mini.stores.filters import And, Compare, In, Or, parse_filter
from mini.stores.lancedb.sql import id_in, quote, to_where

TEXT = "json_extract(json_get(metadata, 'year'), '$')"


def test_quote_doubles_single_quotes_and_keeps_backslashes_literal() -> None:
    assert quote("O'Brien") == "'O''Brien'"
    assert quote("x' OR '1'='1") == "'x'' OR ''1''=''1'"
    assert quote("a\\b") == "'a\\b'"
    assert quote("Zürich 🎉") == "'Zürich 🎉'"


def test_quote_rejects_text_that_is_not_valid_unicode() -> None:
    with pytest.raises(InvalidInputError):
        quote("bad \ud800 surrogate")


def test_id_and_source_filters_use_plain_columns() -> None:
    assert to_where(Compare("id", "eq", "a'b")) == "id = 'a''b'"
    assert to_where(In("id", ("a", "b"), negate=True)) == "id NOT IN ('a', 'b')"
    assert to_where(Compare("source", "eq", "a.pdf")) == "source = 'a.pdf'"
    assert to_where(In("source", ("a.pdf", "b.pdf"))) == "source IN ('a.pdf', 'b.pdf')"
    assert to_where(Compare("source", "gte", "b")) == "source >= 'b'"


def test_source_ne_and_nin_read_the_json_so_non_string_sources_still_count() -> None:
    assert to_where(Compare("source", "ne", "a.pdf")).startswith("(json_extract(json_get(metadata, 'source')")
    assert "json_get(metadata, 'source')" in to_where(In("source", ("a",), negate=True))
    assert "json_get(metadata, 'source')" in to_where(Compare("source", "eq", 3))


def test_id_filters_need_string_values() -> None:
    with pytest.raises(InvalidInputError):
        to_where(Compare("id", "eq", 3))


def test_string_equality_compares_json_text_with_the_escaped_literal() -> None:
    where = to_where(Compare("name", "eq", 'O\'Brien "Jr" a\\b'))
    assert where == "json_extract(json_get(metadata, 'name'), '$') = '\"O''Brien \\\"Jr\\\" a\\\\b\"'"


def test_bool_is_checked_before_int() -> None:
    assert to_where(Compare("flag", "eq", True)) == "json_extract(json_get(metadata, 'flag'), '$') = 'true'"
    assert (
        to_where(Compare("n", "eq", 1))
        == f"coalesce(TRY_CAST({TEXT.replace('year', 'n')} AS DOUBLE) = 1, false)"
    )


def test_numbers_compare_numerically_and_big_ints_as_bigint() -> None:
    assert to_where(Compare("year", "gte", 2020)) == f"TRY_CAST({TEXT} AS DOUBLE) >= 2020"
    assert to_where(Compare("year", "lt", 2.5)) == f"TRY_CAST({TEXT} AS DOUBLE) < 2.5"
    assert to_where(Compare("year", "gt", 1e20)) == f"TRY_CAST({TEXT} AS DOUBLE) > 1e+20"
    assert to_where(Compare("year", "gt", 2**60)) == f"TRY_CAST({TEXT} AS BIGINT) > {2**60}"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 2**63, -(2**63) - 1])
def test_numbers_that_sql_cannot_express_exactly_never_reach_the_translator(value: float) -> None:
    # parse_filter checks values once for every engine; to_where trusts what it parsed.
    with pytest.raises(InvalidInputError):
        parse_filter({"year": {"$gt": value}})
    with pytest.raises(InvalidInputError):
        parse_filter({"year": {"$in": [1, value]}})
    assert to_where(Compare("year", "lte", 2**63 - 1)) == f"TRY_CAST({TEXT} AS BIGINT) <= {2**63 - 1}"


def test_ranges_on_booleans_are_rejected() -> None:
    with pytest.raises(InvalidInputError):
        to_where(Compare("flag", "gt", False))


def test_string_ranges_only_reach_json_get_string_for_string_values() -> None:
    where = to_where(Compare("date", "gte", "2024-01-01"))
    assert where.startswith(
        "nvl2(nullif(substr(json_extract(json_get(metadata, 'date'), '$'), 1, 1), '\"'), NULL, "
    )
    assert where.endswith("json_get_string(metadata, 'date')) >= '2024-01-01'")


def test_ne_and_nin_require_the_key_to_exist() -> None:
    assert to_where(Compare("lang", "ne", "fr")) == (
        "(json_extract(json_get(metadata, 'lang'), '$') IS NOT NULL AND "
        "NOT json_extract(json_get(metadata, 'lang'), '$') = '\"fr\"')"
    )
    assert to_where(In("lang", ("fr", "de"), negate=True)) == (
        "(json_extract(json_get(metadata, 'lang'), '$') IS NOT NULL AND "
        "NOT json_extract(json_get(metadata, 'lang'), '$') IN ('\"fr\"', '\"de\"'))"
    )


def test_in_with_mixed_types_splits_text_and_numeric_comparisons() -> None:
    where = to_where(In("k", ("a", True, 3)))
    text = "json_extract(json_get(metadata, 'k'), '$')"
    assert where == f"({text} IN ('\"a\"', 'true') OR coalesce(TRY_CAST({text} AS DOUBLE) = 3, false))"


def test_and_or_nest_with_parentheses() -> None:
    node = parse_filter({"$or": [{"source": "a"}, {"$and": [{"source": "b"}, {"id": "x"}]}]})
    assert node == Or(
        (Compare("source", "eq", "a"), And((Compare("source", "eq", "b"), Compare("id", "eq", "x"))))
    )
    assert to_where(node) == "(source = 'a' OR (source = 'b' AND id = 'x'))"


def test_keys_with_dots_and_dashes_are_quoted_literally() -> None:
    assert "json_get(metadata, 'a.b-c')" in to_where(Compare("a.b-c", "eq", 1))


def test_id_in_quotes_every_id_and_needs_one() -> None:
    assert id_in(["a", "b'c"]) == "id IN ('a', 'b''c')"
    with pytest.raises(InvalidInputError):
        id_in([])
