"""The Milvus store: backend, Milvus Lite child process and clients, rows and the expression translator.

Names are imported on first access: the Lite child process (`python -m mini.stores.milvus._lite_server`)
imports this package and should not pay for the backend. Nothing here imports pymilvus."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mini._lazy import lazy_attributes

if TYPE_CHECKING:
    from mini.stores.milvus.backend import MilvusBackend
    from mini.stores.milvus.clients import _LiteServer, map_milvus_errors
    from mini.stores.milvus.schema import _ANALYZER

__all__ = ["_ANALYZER", "MilvusBackend", "_LiteServer", "map_milvus_errors"]

_HOMES = {
    "_ANALYZER": "schema",
    "MilvusBackend": "backend",
    "_LiteServer": "clients",
    "map_milvus_errors": "clients",
}

__getattr__ = lazy_attributes(__name__, _HOMES)
