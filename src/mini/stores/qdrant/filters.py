"""Pure translation of the filter AST (`mini.stores.filters`) into Qdrant `models.Filter` objects.

Payload layout (shared with `mini.stores.qdrant.backend`): every point's payload is
``{"id": <our id>, "text": <text>, "metadata": {<user metadata>}}``. User metadata sits under its own key, so
no user key can clash with ours and nothing is reserved; a filter field `f` addresses ``metadata.f`` and the
field `id` addresses the point itself (our ids map to deterministic UUIDs, see `point_id`).

How each operator keeps the reference semantics of `filters.matches` (values are always passed as structured
model values, never spliced into text):

- equality: strings and booleans use `MatchValue`, which Qdrant keeps type-strict (True never matches 1, 1
  never matches "1"). Numbers use `Range(gte=v, lte=v)`: `MatchValue(1)` would miss a stored 1.0 (Qdrant
  matches ints and floats as different types), and a Range compares both numerically and skips booleans.
- `$in`: `MatchAny` for the strings, plus the equality above for each number and boolean.
- `$ne` / `$nin`: "the key exists" AND NOT (the equality / membership). `exists` is
  ``NOT IsEmpty OR IsNull``: IsEmpty is true for a missing key, a null and an empty list, IsNull for a null,
  so together they are true exactly for present keys (null included, as in `matches`). `MatchExcept` is not
  used: it skips nulls and, with integers, treats a stored 1.0 as different from 1.
- ranges on numbers: `Range`, which compares numbers only and never matches a boolean, as `matches` does.
- ranges on strings: Qdrant can only order numbers and datetimes, so they raise `UnsupportedFilterError`.

Limits (documented, not matched): list values match element-wise in Qdrant (``{"tags": ["a", "b"]}``
matches ``{"tags": "a"}``; `matches` compares the whole list), and an empty list counts as a missing key
for `$ne`/`$nin`; ranges compare numbers as doubles, so integers beyond 2**53 lose precision there.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from mini.errors import InvalidInputError, UnsupportedFilterError
from mini.stores.filters import And, Compare, Filter, In, Or, Scalar

if TYPE_CHECKING:
    from qdrant_client import models

# Payload keys. Changing any of these (or the namespace) orphans existing collections.
ID_KEY = "id"
TEXT_KEY = "text"
METADATA_KEY = "metadata"
# Our ids are arbitrary strings; Qdrant point ids must be unsigned ints or UUIDs. uuid5 over a fixed namespace
# maps every string (also 32-hex-char ones) the same way, with no collisions in practice, so there is one rule.
ID_NAMESPACE = uuid.UUID("7b4ced98-e530-423d-ac4f-f8af611aa3a2")

_RANGE_OPS = ("gt", "gte", "lt", "lte")
# Doubles hold every integer up to 2**53 exactly; larger integer equalities use MatchValue (int payloads only).
_EXACT_DOUBLE_INT = 2**53
_PLAIN_KEY = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def point_id(record_id: str) -> str:
    """The Qdrant point id (a UUID string) for one of our ids."""
    return str(uuid.uuid5(ID_NAMESPACE, record_id))


def payload_key(field: str) -> str:
    """The payload path of a metadata field: ``metadata.year``, or ``metadata."a.b"`` when it needs quoting.

    Field names are validated by `parse_filter` (letters, digits, '_', '-', '.'), so they never contain a
    double quote; dots and non-ASCII letters are quoted so Qdrant reads the name as one literal key.
    """
    if all(ch in _PLAIN_KEY for ch in field):
        return f"{METADATA_KEY}.{field}"
    return f'{METADATA_KEY}."{field}"'


def has_ids(record_ids: Iterable[str]) -> models.HasIdCondition:
    from qdrant_client import models

    return models.HasIdCondition(has_id=[point_id(i) for i in record_ids])


def to_qdrant(node: Filter) -> models.Filter:
    """The Qdrant filter for a filter from `parse_filter` (which checked its values); raises
    `UnsupportedFilterError` for string ranges."""
    from qdrant_client import models

    condition = _condition(node)
    return condition if isinstance(condition, models.Filter) else models.Filter(must=[condition])


def _condition(node: Filter) -> Any:
    from qdrant_client import models

    if isinstance(node, And):
        return models.Filter(must=[_condition(item) for item in node.items])
    if isinstance(node, Or):
        if not node.items:  # parse_filter never builds one; an empty `should` would match everything
            raise InvalidInputError("$or needs at least one filter")
        return models.Filter(should=[_condition(item) for item in node.items])
    if node.field == ID_KEY:
        return _id_condition(node)
    key = payload_key(node.field)
    if isinstance(node, In):
        member = _member(key, node.values)
        return models.Filter(must=[_exists(key)], must_not=[member]) if node.negate else member
    if node.op == "eq":
        return _equals(key, node.value)
    if node.op == "ne":
        return models.Filter(must=[_exists(key)], must_not=[_equals(key, node.value)])
    return _range(node.field, key, node.op, node.value)


def _id_condition(node: Compare | In) -> Any:
    from qdrant_client import models

    values = node.values if isinstance(node, In) else (node.value,)
    if not all(isinstance(v, str) for v in values):
        raise InvalidInputError(f"filter values for {ID_KEY!r} must be strings")
    ids = [str(v) for v in values]
    if isinstance(node, Compare) and node.op in _RANGE_OPS:
        raise UnsupportedFilterError(
            f"Qdrant cannot order strings: the range filter {node.op!r} on {ID_KEY!r} is not supported"
        )
    negate = node.negate if isinstance(node, In) else node.op == "ne"
    # Every point has an id, so the negation needs no "exists" guard.
    return models.Filter(must_not=[has_ids(ids)]) if negate else has_ids(ids)


def _exists(key: str) -> models.Filter:
    """True for points whose metadata has the key, whatever its value (null included, empty list not)."""
    from qdrant_client import models

    field = models.PayloadField(key=key)
    return models.Filter(
        should=[
            models.Filter(must_not=[models.IsEmptyCondition(is_empty=field)]),
            models.IsNullCondition(is_null=field),
        ]
    )


def _match(key: str, value: bool | int | str) -> models.FieldCondition:
    from qdrant_client import models

    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _equals(key: str, value: Scalar) -> models.FieldCondition:
    """Type-strict equality; ints and floats compare numerically."""
    from qdrant_client import models

    if isinstance(value, (bool, str)):
        return _match(key, value)
    if isinstance(value, int) and abs(value) > _EXACT_DOUBLE_INT:
        return _match(key, value)  # exact on integer payloads (a float that large is beyond exact anyway)
    number = float(value)
    return models.FieldCondition(key=key, range=models.Range(gte=number, lte=number))


def _member(key: str, values: Sequence[Scalar]) -> Any:
    from qdrant_client import models

    strings = list(dict.fromkeys(v for v in values if isinstance(v, str)))
    parts: list[Any] = []
    if len(strings) == 1:
        parts.append(_match(key, strings[0]))
    elif strings:
        parts.append(models.FieldCondition(key=key, match=models.MatchAny(any=strings)))
    # Booleans and numbers: one condition per distinct value. Keyed by (is-bool, value) so True and 1 stay
    # apart while 1 and 1.0 collapse.
    others = dict.fromkeys((isinstance(v, bool), v) for v in values if not isinstance(v, str))
    parts += [_equals(key, v) for _, v in others]
    return parts[0] if len(parts) == 1 else models.Filter(should=parts)


def _range(field: str, key: str, op: str, value: Scalar) -> Any:
    from qdrant_client import models

    if isinstance(value, bool):
        raise InvalidInputError(
            f"a range on {field!r} needs a number, not {value!r}: ranges never order booleans"
        )
    if isinstance(value, str):
        raise UnsupportedFilterError(
            f"Qdrant cannot order strings: the range filter {op!r} on {field!r} with {value!r} is not "
            "supported (ranges work on numbers; store dates as numbers, e.g. a year or a Unix time)"
        )
    return models.FieldCondition(key=key, range=models.Range(**{op: float(value)}))
