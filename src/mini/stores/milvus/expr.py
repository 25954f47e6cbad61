"""Pure translation of the filter AST (`mini.stores.filters`) into Milvus boolean expressions.

Milvus Lite 3.2 has no `filter_params` templating, so user values are written into the expression as escaped
literals. Its evaluator compares JSON values with Python's `==`, where `True == 1`, so type strictness cannot
come from the values alone: every row also stores `kinds`, a JSON object giving the JSON type of each top-level
metadata key (see `kind_of`), and every metadata comparison is guarded by it. The guard also makes each
comparison a plain true/false whenever the key exists, so `not (...)` never meets Milvus's NULL logic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mini.errors import InvalidInputError
from mini.stores.filters import Compare, Filter, In, Scalar, id_literals, to_expression, utf8_size

# Scalar columns next to the JSON ones. `source` holds metadata["source"] when it is a string ("" otherwise)
# and `has_source` says which: the common `{"source": "a.pdf"}` filter then reads no JSON at all.
ID_FIELD = "id"
SOURCE_FIELD = "source"
HAS_SOURCE_FIELD = "has_source"
METADATA_FIELD = "metadata"
KINDS_FIELD = "kinds"

# Values of the `kinds` object.
KIND_STRING, KIND_NUMBER, KIND_BOOL, KIND_NULL, KIND_LIST, KIND_OBJECT = "s", "n", "b", "z", "a", "o"

_OPS = {"eq": "==", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
# Milvus parses integer literals as int64; -2**63 cannot be written (it is the negation of 2**63).
_INT_MIN, _INT_MAX = -(2**63) + 1, 2**63 - 1
# Escapes both Milvus Lite's lexer and the server's (Go strconv.Unquote) understand. Other characters,
# control characters and non-ASCII text included, are valid raw inside a double-quoted literal in both.
_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})


@dataclass(frozen=True, slots=True)
class RawExpression:
    """A Milvus boolean expression sent as written, in place of a parsed filter (mini-rag 0.1.3's `filter_expr`).

    Trusted input only: it is not parsed, escaped or checked here (Milvus reports its syntax errors), so it
    must never be built from user text; use a filter dict for that. It sees the raw schema: `metadata` (the
    JSON metadata), `text`, `id`, `source`; a comparison on JSON is not type-strict as parsed filters are."""

    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise InvalidInputError("a Milvus filter expression must be a non-empty string")
        utf8_size(self.text, "the Milvus filter expression")


def kind_of(value: Any) -> str:
    """The `kinds` code of a metadata value (already JSON-normalised: str, int, float, bool, None, list, dict)."""
    if isinstance(value, bool):  # before int: bool is an int subclass
        return KIND_BOOL
    if isinstance(value, (int, float)):
        return KIND_NUMBER
    if isinstance(value, str):
        return KIND_STRING
    if value is None:
        return KIND_NULL
    return KIND_LIST if isinstance(value, list) else KIND_OBJECT


def quote(value: str) -> str:
    """A double-quoted Milvus string literal for any text (quotes, backslashes, newlines, emoji)."""
    utf8_size(value, f"filter value {value!r}")  # lone surrogates (in ids) cannot be sent to Milvus
    return '"' + value.translate(_ESCAPES) + '"'


def literal(value: Scalar) -> str:
    """A Milvus literal for a filter value; raises `InvalidInputError` for numbers Milvus cannot hold."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise InvalidInputError(f"filter value {value} does not fit in a signed 64-bit integer")
        return str(value)
    if not math.isfinite(value):
        raise InvalidInputError(f"filter value must be a finite number, not {value!r}")
    return repr(float(value))  # shortest round-tripping form, e.g. 0.1, 1e-05, 2.5e+20


def id_in(ids: Sequence[str]) -> str:
    """`id in [...]` for a non-empty batch of ids."""
    return f"{ID_FIELD} in [{id_literals(ids, quote)}]"


def to_expr(node: Filter) -> str:
    """The Milvus expression for a parsed filter (semantics of `filters.matches`)."""
    return to_expression(node, _condition, "and", "or")


def _condition(node: Compare | In) -> str:
    values = node.values if isinstance(node, In) else (node.value,)
    literals = [literal(v) for v in values]  # validates every value, whichever branch is taken
    if isinstance(node, Compare) and node.op in ("gt", "gte", "lt", "lte") and isinstance(node.value, bool):
        raise InvalidInputError(f"range filter on {node.field!r} needs a number or a string, not a bool")
    if node.field == ID_FIELD:
        return _id(node, literals)
    if node.field == SOURCE_FIELD and _source_column_is_exact(node):
        return _source(node, literals)
    return _metadata(node)


def _id(node: Compare | In, literals: list[str]) -> str:
    values = node.values if isinstance(node, In) else (node.value,)
    if not all(isinstance(v, str) for v in values):
        raise InvalidInputError(f"filter values for {ID_FIELD!r} must be strings")
    if isinstance(node, In):
        return f"{ID_FIELD} {'not in' if node.negate else 'in'} [{', '.join(literals)}]"
    return f"{ID_FIELD} {_OPS[node.op]} {literals[0]}"


def _source_column_is_exact(node: Compare | In) -> bool:
    # ne/nin must also match rows whose source is not a string (the column holds "" for them), so they read
    # the JSON like any other key; eq/in/ranges with string values are answered by the column alone.
    if isinstance(node, In):
        return not node.negate and all(isinstance(v, str) for v in node.values)
    return node.op != "ne" and isinstance(node.value, str)


def _source(node: Compare | In, literals: list[str]) -> str:
    if isinstance(node, In):
        test = f"{SOURCE_FIELD} in [{', '.join(literals)}]"
        could_match_empty = "" in node.values
    else:
        test = f"{SOURCE_FIELD} {_OPS[node.op]} {literals[0]}"
        could_match_empty = node.op != "eq" or node.value == ""
    # Rows without a string source hold "": only the marker keeps `== ""` or `< "b"` from matching them.
    return f"({HAS_SOURCE_FIELD} and {test})" if could_match_empty else test


def _path(column: str, field: str) -> str:
    return f"{column}[{quote(field)}]"


def _kind_is(field: str, kind: str) -> str:
    return f"{_path(KINDS_FIELD, field)} == {quote(kind)}"


def _value_kind(value: Scalar) -> str:
    return KIND_BOOL if isinstance(value, bool) else KIND_STRING if isinstance(value, str) else KIND_NUMBER


def _member(field: str, values: Sequence[Scalar]) -> str:
    """True iff the key holds one of `values` (type-strict, ints == floats); false, never NULL, if it exists."""
    value = _path(METADATA_FIELD, field)
    groups: dict[str, list[str]] = {}
    for v in values:
        groups.setdefault(_value_kind(v), []).append(literal(v))
    parts = []
    for kind, group in groups.items():
        # `==` chains, not `in`: Milvus Lite only accepts `in` on plain fields, not on JSON paths.
        same = " or ".join(f"{value} == {lit}" for lit in dict.fromkeys(group))
        parts.append(f"({_kind_is(field, kind)} and ({same}))")
    return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"


def _metadata(node: Compare | In) -> str:
    present = f"exists {_path(KINDS_FIELD, node.field)}"
    if isinstance(node, In):
        member = _member(node.field, node.values)
        # A missing key matches neither $in nor $nin (the reference semantics in filters.matches).
        return f"({present} and not {member})" if node.negate else member
    if node.op == "eq":
        return _member(node.field, [node.value])
    if node.op == "ne":
        return f"({present} and not {_member(node.field, [node.value])})"
    # Ranges compare numbers with numbers and strings with strings (code point order, as Python does).
    kind = _value_kind(node.value)
    test = f"{_path(METADATA_FIELD, node.field)} {_OPS[node.op]} {literal(node.value)}"
    return f"({_kind_is(node.field, kind)} and {test})"
