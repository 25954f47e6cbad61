"""Metadata filters: one dict form, parsed into a small AST that each backend translates with pure functions.

The dict form (Mongo-like):
    {"source": "a.pdf"}                                equality
    {"year": {"$gte": 2020, "$lt": 2025}}             range ($gt, $gte, $lt, $lte), several keys are ANDed
    {"lang": {"$in": ["en", "de"]}}                    membership ($in, $nin); {"lang": {"$ne": "fr"}}
    {"$or": [{...}, {...}]}, {"$and": [...]}           boolean combinations; top-level keys are ANDed

Semantics (`matches` is the reference every backend must agree with): a missing key matches nothing, not even
`$ne`/`$nin`; equality is type-strict except that ints and floats compare numerically (True is not 1);
ranges compare numbers with numbers and strings with strings, and never match a boolean (a boolean bound is
refused). `id` is the row id, `source` the document source.
`parse_filter` also checks every value once for all engines (valid Unicode, integers within 64 bits, finite
floats) and bounds the filter's shape (nesting, conditions, values: `MAX_FILTER_*`), so the translators trust a
parsed filter. User values never become raw expression text: translators
quote/escape them or pass them as parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mini.errors import InvalidInputError

Scalar = str | int | float | bool
# Every engine stores integers as signed 64-bit numbers: a filter on a larger one could never match exactly.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
CompareOp = Literal["eq", "ne", "gt", "gte", "lt", "lte"]

_COMPARE_OPS: dict[str, CompareOp] = {
    "$eq": "eq",
    "$ne": "ne",
    "$gt": "gt",
    "$gte": "gte",
    "$lt": "lt",
    "$lte": "lte",
}


@dataclass(frozen=True, slots=True)
class Compare:
    field: str
    op: CompareOp
    value: Scalar


@dataclass(frozen=True, slots=True)
class In:
    field: str
    values: tuple[Scalar, ...]
    negate: bool = False


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Filter, ...]


Filter = Compare | In | And | Or


# Limits on a filter's shape, checked while parsing (before any I/O, so before any provider call): a filter
# is application-sized, and each engine has its own ceiling beyond them (LanceDB's SQL parser refuses about
# 50 nested parentheses, as a 500 that echoed the generated SQL). The bounds leave room for the library's own
# filters (a delete names up to 2 x 500 sources) and for one level of wrapping (the prefilter leg's `$and`).
MAX_FILTER_DEPTH = 8  # nested objects: {"$and": [{"$or": [{...}]}]} is 3
MAX_FILTER_CONDITIONS = 100  # field comparisons and memberships
MAX_FILTER_VALUES = 2_000  # values compared with, every element of a `$in`/`$nin` list counted
_FIELD_OPERATORS = ", ".join([*_COMPARE_OPS, "$in", "$nin"])


def _check_field(name: Any) -> str:
    if isinstance(name, str) and name.startswith("$"):
        raise InvalidInputError(
            f"unknown filter operator {name!r}: a filter's keys are field names, $and or $or"
        )
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"invalid filter field {name!r}")
    # Field names are identifiers chosen by the application, not user data; keep them to a safe alphabet so
    # every backend can address them without quoting games.
    if not all(ch.isalnum() or ch in "_-." for ch in name):
        raise InvalidInputError(f"filter field {name!r} may only contain letters, digits, '_', '-' and '.'")
    return name


def utf8_size(text: str, what: str) -> int:
    """The UTF-8 length of `text`; text that is not valid Unicode (lone surrogates) reaches no engine."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidInputError(f"{what} is not valid Unicode") from exc


def _check_scalar(value: Any, field: str) -> Scalar:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        utf8_size(value, f"filter value {value!r}")
        return value
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise InvalidInputError(f"filter value for {field!r} does not fit in 64 bits: {value}")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"filter value for {field!r} must be a finite number, not {value!r}")
        return value
    raise InvalidInputError(
        f"filter value for {field!r} must be str, int, float or bool, not {type(value).__name__}"
    )


class _Parser:
    """One filter dict's parse, counting what the limits bound (recursion is bounded by MAX_FILTER_DEPTH)."""

    def __init__(self) -> None:
        self.conditions = 0
        self.values = 0

    def count(self, values: int) -> None:
        self.conditions += 1
        self.values += values
        if self.conditions > MAX_FILTER_CONDITIONS:
            raise InvalidInputError(
                f"the filter has more than {MAX_FILTER_CONDITIONS} conditions; combine values with $in"
            )
        if self.values > MAX_FILTER_VALUES:
            raise InvalidInputError(f"the filter has more than {MAX_FILTER_VALUES} values")

    def field(self, field: str, spec: Any) -> Filter:
        if not isinstance(spec, Mapping):
            self.count(1)
            return Compare(field, "eq", _check_scalar(spec, field))
        if not spec:
            raise InvalidInputError(f"empty operator object for filter field {field!r}")
        parts: list[Filter] = []
        for op, value in spec.items():
            if op in _COMPARE_OPS:
                if isinstance(value, bool) and op not in ("$eq", "$ne"):
                    raise InvalidInputError(
                        f"{op} on {field!r} needs a number or a string, not {value!r}: "
                        "ranges never order booleans"
                    )
                self.count(1)
                parts.append(Compare(field, _COMPARE_OPS[op], _check_scalar(value, field)))
            elif op in ("$in", "$nin"):
                if not isinstance(value, (list, tuple)) or not value:
                    raise InvalidInputError(f"{op} for {field!r} needs a non-empty list")
                self.count(len(value))
                parts.append(In(field, tuple(_check_scalar(v, field) for v in value), negate=op == "$nin"))
            else:
                raise InvalidInputError(
                    f"unknown filter operator {op!r} for field {field!r}; allowed: {_FIELD_OPERATORS}"
                )
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def filter(self, spec: Any, depth: int) -> Filter | None:
        if not isinstance(spec, Mapping):
            raise InvalidInputError(f"a filter must be a dict, not {type(spec).__name__}")
        if depth > MAX_FILTER_DEPTH:
            raise InvalidInputError(
                f"the filter is nested more than {MAX_FILTER_DEPTH} levels deep ($and/$or inside each other)"
            )
        if not spec:
            return None
        parts: list[Filter] = []
        for key, value in spec.items():
            if key in ("$and", "$or"):
                if not isinstance(value, (list, tuple)) or not value:
                    raise InvalidInputError(f"{key} needs a non-empty list of filters")
                items = tuple(f for f in (self.filter(v, depth + 1) for v in value) if f is not None)
                if not items:
                    raise InvalidInputError(f"{key} needs at least one non-empty filter")
                parts.append(And(items) if key == "$and" else Or(items))
            else:
                parts.append(self.field(_check_field(key), value))
        return parts[0] if len(parts) == 1 else And(tuple(parts))


def parse_filter(spec: Mapping[str, Any] | Filter | None) -> Filter | None:
    """Validate a filter dict (or pass an AST through); raises `InvalidInputError` before any I/O: for a
    malformed filter, a value no engine can compare, an unknown operator, or a filter beyond the limits
    (`MAX_FILTER_DEPTH` levels, `MAX_FILTER_CONDITIONS` conditions, `MAX_FILTER_VALUES` values)."""
    if spec is None or isinstance(spec, (Compare, In, And, Or)):
        return spec
    return _Parser().filter(spec, depth=1)


def to_expression(node: Filter, leaf: Callable[[Compare | In], str], and_: str, or_: str) -> str:
    """A filter as an engine's boolean expression: `And`/`Or` groups parenthesised and joined with `and_`/`or_`,
    each condition written by `leaf`."""
    if isinstance(node, And | Or):
        joiner = f" {and_ if isinstance(node, And) else or_} "
        return "(" + joiner.join(to_expression(item, leaf, and_, or_) for item in node.items) + ")"
    return leaf(node)


def id_literals(ids: Sequence[str], quote: Callable[[str], str]) -> str:
    """A non-empty batch of ids as the engine's comma-separated string literals (for an `id in` list)."""
    if not ids:
        raise InvalidInputError("id_in needs at least one id")
    return ", ".join(quote(i) for i in ids)


def _same(stored: Any, wanted: Scalar) -> bool:
    """Type-strict equality: True is not 1 (JSON keeps them apart, so every backend can too); 1 == 1.0."""
    if isinstance(stored, bool) or isinstance(wanted, bool):
        return isinstance(stored, bool) and isinstance(wanted, bool) and stored == wanted
    return bool(stored == wanted)


def _orderable(stored: Any, bound: Scalar) -> bool:
    if isinstance(stored, bool) or isinstance(bound, bool):
        return False
    both_numbers = isinstance(stored, int | float) and isinstance(bound, int | float)
    return both_numbers or (isinstance(stored, str) and isinstance(bound, str))


def matches(node: Filter | None, metadata: Mapping[str, Any]) -> bool:
    """Evaluate a filter against one metadata dict (reference semantics for tests and in-memory use)."""
    if node is None:
        return True
    if isinstance(node, And):
        return all(matches(item, metadata) for item in node.items)
    if isinstance(node, Or):
        return any(matches(item, metadata) for item in node.items)
    if node.field not in metadata:
        return False
    value = metadata[node.field]
    if isinstance(node, In):
        return any(_same(value, v) for v in node.values) != node.negate
    if node.op == "eq":
        return _same(value, node.value)
    if node.op == "ne":
        return not _same(value, node.value)
    if not _orderable(value, node.value):
        return False  # numbers order with numbers, strings with strings; booleans never (True is not 1)
    if node.op == "gt":
        return bool(value > node.value)
    if node.op == "gte":
        return bool(value >= node.value)
    if node.op == "lt":
        return bool(value < node.value)
    return bool(value <= node.value)
