"""Pure translation of the filter AST (`mini.stores.filters`) into LanceDB (DataFusion SQL) where-clauses."""

from __future__ import annotations

import json
from collections.abc import Sequence

from mini.errors import InvalidInputError
from mini.stores.filters import Compare, Filter, In, Scalar, id_literals, to_expression, utf8_size

# Plain columns next to the JSON metadata. `id` is the row key; `source` holds metadata["source"] when it is a
# string (NULL otherwise), so the common `{"source": "a.pdf"}` filter avoids decoding JSON for every row.
ID_COLUMN = "id"
SOURCE_COLUMN = "source"
METADATA_COLUMN = "metadata"

_SQL_OPS = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_RANGE_OPS = frozenset({"gt", "gte", "lt", "lte"})
# Doubles represent every integer up to 2**53 exactly; larger ones are compared as BIGINT instead.
_EXACT_DOUBLE_INT = 2**53


def quote(value: str) -> str:
    """A SQL string literal. DataFusion treats backslashes literally; only single quotes need doubling."""
    utf8_size(value, f"filter value {value!r}")  # lone surrogates (in ids) cannot reach the Rust side
    return "'" + value.replace("'", "''") + "'"


def id_in(ids: Sequence[str]) -> str:
    """`id IN (...)` for a non-empty batch of ids."""
    return f"{ID_COLUMN} IN ({id_literals(ids, quote)})"


def to_where(node: Filter) -> str:
    """The where-clause for a filter from `parse_filter` (which checked its values)."""
    return to_expression(node, _condition, "AND", "OR")


def _condition(node: Compare | In) -> str:
    if node.field == ID_COLUMN:
        return _plain(ID_COLUMN, node)
    if node.field == SOURCE_COLUMN and _source_column_is_exact(node):
        return _plain(SOURCE_COLUMN, node)
    return _json_field(node)


def _source_column_is_exact(node: Compare | In) -> bool:
    # The column is NULL for rows whose source is missing or not a string, which is exactly right for
    # eq/in/ranges with string values; ne/nin must also match non-string sources, so they read the JSON.
    if isinstance(node, In):
        return not node.negate and all(isinstance(v, str) for v in node.values)
    return node.op != "ne" and isinstance(node.value, str)


def _plain(column: str, node: Compare | In) -> str:
    values = node.values if isinstance(node, In) else (node.value,)
    if not all(isinstance(v, str) for v in values):
        raise InvalidInputError(f"filter values for {column!r} must be strings")
    if isinstance(node, In):
        keyword = "NOT IN" if node.negate else "IN"
        return f"{column} {keyword} ({', '.join(quote(str(v)) for v in values)})"
    return f"{column} {_SQL_OPS[node.op]} {quote(str(node.value))}"


def _json_text(field: str) -> str:
    # The value as JSON text ('"x"', '1.5', 'true', '[...]'), NULL when the key is missing. Unlike
    # json_get_int/json_get_string, which fail the whole query on a row holding another type, this never
    # errors, so mixed-type metadata cannot break a filter.
    return f"json_extract(json_get({METADATA_COLUMN}, {quote(field)}), '$')"


def _json_string_literal(value: str) -> str:
    # Lance prints stored strings exactly as json.dumps(ensure_ascii=False) does (checked for every ASCII
    # character and non-BMP text in tests), so equality on the JSON text is equality on the string.
    return quote(json.dumps(value, ensure_ascii=False))


def _number_literal(value: int | float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def _number_expr(text: str, value: int | float) -> str:
    # TRY_CAST yields NULL for strings (they keep their quotes), booleans, null, arrays and objects,
    # so only JSON numbers compare; ints and floats compare numerically like Python's 1 == 1.0.
    if isinstance(value, int) and abs(value) > _EXACT_DOUBLE_INT:
        return f"TRY_CAST({text} AS BIGINT)"
    return f"TRY_CAST({text} AS DOUBLE)"


def _equals(text: str, value: Scalar) -> str:
    """Type-strict equality that is never NULL when the key exists."""
    if isinstance(value, (bool, str)):
        return f"{text} = {_equals_literal(value)}"
    return f"coalesce({_number_expr(text, value)} = {_number_literal(value)}, false)"


def _member(text: str, values: Sequence[Scalar]) -> str:
    """Type-strict membership that is never NULL when the key exists."""
    literals = [_equals_literal(v) for v in values if isinstance(v, (bool, str))]
    parts = [f"{text} IN ({', '.join(literals)})"] if literals else []
    numbers = [v for v in values if not isinstance(v, (bool, str))]
    parts += [_equals(text, v) for v in numbers]
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


def _equals_literal(value: bool | str) -> str:
    if isinstance(value, bool):
        return "'true'" if value else "'false'"
    return _json_string_literal(value)


def _json_field(node: Compare | In) -> str:
    text = _json_text(node.field)
    if isinstance(node, In):
        member = _member(text, node.values)
        # A missing key matches neither $in nor $nin (the reference semantics in filters.matches).
        return f"({text} IS NOT NULL AND NOT {member})" if node.negate else member
    value = node.value
    if node.op == "eq":
        return _equals(text, value)
    if node.op == "ne":
        return f"({text} IS NOT NULL AND NOT {_equals(text, value)})"
    op = _SQL_OPS[node.op]
    if isinstance(value, bool):
        raise InvalidInputError(f"range filter on {node.field!r} needs a number or a string, not a bool")
    if isinstance(value, str):
        # json_get_string is only reached for rows whose JSON text starts with a quote: nvl2 is rewritten
        # into a lazy CASE (CASE itself is not accepted in Lance filters), so arrays/objects never reach it.
        string = (
            f"nvl2(nullif(substr({text}, 1, 1), '\"'), NULL, "
            f"json_get_string({METADATA_COLUMN}, {quote(node.field)}))"
        )
        return f"{string} {op} {quote(value)}"
    return f"{_number_expr(text, value)} {op} {_number_literal(value)}"
