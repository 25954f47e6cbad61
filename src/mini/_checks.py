"""Input checks with one wording each: numeric ranges (`InvalidInputError` "out of range"), unusable text."""

from __future__ import annotations

import re

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


# A lone surrogate (U+D800-U+DFFF, which JSON's "\ud800" escape can carry) has no UTF-8 form: it fails deep
# inside whatever encodes it next (an HTTP client, a store engine, the response). NUL is valid Unicode but cut
# or refused by C-based engines and many providers, and never part of real text (the file loaders refuse it too).
_UNUSABLE = re.compile("[\ud800-\udfff\x00]")


def text_problem(text: str) -> str | None:
    """Why `text` cannot be used as text (a lone surrogate, a NUL character), or None when it can."""
    found = _UNUSABLE.search(text)
    if found is None:
        return None
    char = found.group()
    what = (
        "a NUL character"
        if char == "\x00"
        else f"a lone surrogate (U+{ord(char):04X}), which is not valid Unicode"
    )
    return f"contains {what} at position {found.start()}"


def check_text(text: str, what: str) -> str:
    """`text`, or `InvalidInputError` naming `what` if it is unusable as text (see `text_problem`)."""
    problem = text_problem(text)
    if problem is not None:
        raise InvalidInputError(f"{what} {problem}")
    return text
