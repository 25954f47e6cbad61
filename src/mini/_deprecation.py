"""One `DeprecationWarning` per renamed mini-rag 0.1.3 name, naming its replacement (issue 19).

0.1.3 code must run unchanged, so its names keep working; each says once per process what replaces it, so a
log is not flooded by a loop that indexes a thousand files. The new API never calls `warn_renamed`.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_warned: set[str] = set()


def warn_renamed(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn once per process that 0.1.3's `old` is now `new` (both as the user would write them)."""
    if old in _warned:
        return
    _warned.add(old)
    warnings.warn(
        f"{old} is mini-rag 0.1.3's spelling; use {new} (see MIGRATING.md)",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def reset() -> None:
    """Forget which names have warned (for tests that assert a warning)."""
    _warned.clear()


def legacy_keywords(keywords: frozenset[str], handler: Callable[..., Any]) -> Callable[[F], F]:
    """Route a call that uses any of 0.1.3's `keywords` to `handler(self, *args, **kwargs)` instead.

    The decorated method keeps its new signature (`inspect.signature` follows `__wrapped__`, so sync twins,
    IDEs and docs show only the new API); only calls spelled the 0.1.3 way take the compatibility path.
    """

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def routed(*args: Any, **kwargs: Any) -> Any:
            if keywords.isdisjoint(kwargs):
                return method(*args, **kwargs)
            return handler(*args, **kwargs)

        return routed  # type: ignore[return-value]

    return decorate


def pop_renamed(kwargs: dict[str, Any], renames: Mapping[str, str], owner: str) -> None:
    """Rename 0.1.3 keywords in `kwargs` in place (`{"query": "question"}`), warning once for each."""
    for old, new in renames.items():
        if old in kwargs:
            warn_renamed(
                f"{owner}({old}=...)", f"{owner}({new}=...)" if new else f"{owner}(...)", stacklevel=4
            )
            kwargs[new] = kwargs.pop(old)


class InitSignature:
    """`__signature__ = InitSignature()` on a class whose `__new__(cls, *args, **kwargs)` picks a 0.1.3
    subclass: `inspect.signature(cls)` (help, IDEs) would otherwise show `__new__`'s `(*args, **kwargs)`.
    A descriptor, so each subclass shows its own `__init__`."""

    def __get__(self, instance: object, owner: type) -> inspect.Signature:
        if instance is not None:
            raise AttributeError("__signature__")
        signature = inspect.signature(owner.__init__)  # type: ignore[misc]  # the class's own, not an instance's
        return signature.replace(
            parameters=list(signature.parameters.values())[1:], return_annotation=inspect.Signature.empty
        )
