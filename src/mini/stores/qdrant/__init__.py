"""The Qdrant store: backend, clients (server and local mode), points and the filter translator."""

from __future__ import annotations

from mini.stores.qdrant.backend import QdrantBackend
from mini.stores.qdrant.points import to_points as _points

__all__ = ["QdrantBackend", "_points"]
