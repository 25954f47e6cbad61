"""Range checks for numeric options: one wording for every "out of range" `InvalidInputError`."""

from __future__ import annotations

from mini.errors import InvalidInputError


def at_least(minimum: float, **values: float | None) -> None:
    """Raise `InvalidInputError` naming the first of `values` below `minimum`; None means "no limit" and passes."""
    for name, value in values.items():
        if value is not None and value < minimum:
            raise InvalidInputError(f"{name} must be >= {minimum:g}, got {value!r}")


def positive(**values: float | None) -> None:
    """Raise `InvalidInputError` naming the first of `values` that is not > 0; None means "no limit"."""
    for name, value in values.items():
        if value is not None and value <= 0:
            raise InvalidInputError(f"{name} must be > 0, got {value!r}")
