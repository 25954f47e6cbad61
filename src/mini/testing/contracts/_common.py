"""Helpers the store contract checks share: unit vectors, sample rows, filtered ids and expected errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from mini.stores.base import Record, VectorStoreBackend
from mini.stores.filters import Compare, Filter, In, parse_filter

BackendFactory = Callable[..., VectorStoreBackend]
Check = Callable[[BackendFactory], Awaitable[None]]

DIM = 4

E = TypeVar("E", bound=BaseException)


def unit(i: int, dim: int = DIM) -> list[float]:
    return [1.0 if j == i % dim else 0.0 for j in range(dim)]


def rows(n: int, prefix: str = "r", dim: int = DIM) -> list[Record]:
    """Rows `{prefix}{i}` with unit vectors and metadata `{"source": f"s{i % 3}", "n": i}`."""
    return [
        Record(f"{prefix}{i}", unit(i, dim), f"text {i}", {"source": f"s{i % 3}", "n": i}) for i in range(n)
    ]


def parsed(spec: dict[str, Any]) -> Filter:
    node = parse_filter(spec)
    assert node is not None, spec
    return node


async def ids_for(backend: VectorStoreBackend, spec: Any, top_k: int = 100) -> set[str]:
    hits = await backend.search(unit(0), top_k=top_k, filter=parse_filter(spec))
    return {hit.id for hit in hits}


async def expect_error(error: type[E], call: Awaitable[Any], what: str) -> E:
    """The error `call` raises; an AssertionError naming `what` if it returns instead."""
    try:
        await call
    except error as exc:
        return exc
    raise AssertionError(f"{what} did not raise {error.__name__}")


def has_string_range(node: Filter) -> bool:
    """Whether a filter orders strings: the one optional feature (`UnsupportedFilterError` may refuse it)."""
    if isinstance(node, Compare):
        return node.op in ("gt", "gte", "lt", "lte") and isinstance(node.value, str)
    if isinstance(node, In):
        return False
    return any(has_string_range(item) for item in node.items)
