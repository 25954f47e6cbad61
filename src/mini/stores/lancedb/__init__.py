"""The embedded LanceDB store: backend, commits, rows and the filter translator into DataFusion SQL."""

from __future__ import annotations

from mini.stores.lancedb.backend import LanceDBBackend
from mini.stores.lancedb.commits import map_lancedb_errors

__all__ = ["LanceDBBackend", "map_lancedb_errors"]
