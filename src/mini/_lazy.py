"""Lazy package attributes (PEP 562): a name is imported from its home module on first access.

Why: `import mini.eval`, `mini.rerankers` or `mini.stores.milvus` must stay cheap (the CLI's cold start, and the
Milvus Lite child process, which imports its package but never the backend); the heavy modules load only when
one of their names is used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_attributes(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` for `package`: `homes` maps each public name to its submodule (relative
    to `package`). Use as `__getattr__ = lazy_attributes(__name__, {...})`."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{home}"), name)

    return __getattr__
