"""The embedded LanceDB store: backend, rows and the filter translator into DataFusion SQL."""

from __future__ import annotations

from mini.stores.lancedb.backend import LanceDBBackend, map_lancedb_errors

__all__ = ["LanceDBBackend", "map_lancedb_errors"]
