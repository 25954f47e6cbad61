"""An in-memory embedding cache keyed by (model, content hash): repeated text is embedded once."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from mini._checks import at_least

if TYPE_CHECKING:
    import numpy as np

CacheKey = tuple[str, str]  # (embedding model key, content hash)


class EmbeddingCache:
    """Least-recently-used vectors, bounded by their total size in bytes. Thread-safe.

    The ingestor fills it with every vector it embeds and with the stored vectors of files it is about to
    replace, so text that repeats across files, or survives an edit, is never sent to the model twice.
    """

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        at_least(0, max_bytes=max_bytes)
        self.max_bytes = max_bytes
        self._vectors: OrderedDict[CacheKey, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._vectors)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: CacheKey) -> np.ndarray | None:
        with self._lock:
            vector = self._vectors.get(key)
            if vector is None:
                self.misses += 1
                return None
            self._vectors.move_to_end(key)
            self.hits += 1
            return vector

    def put(self, key: CacheKey, vector: np.ndarray) -> None:
        import numpy as np  # not at module level: `import mini` stays light

        vector = np.asarray(vector, dtype=np.float32)
        if vector.nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._vectors.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._vectors[key] = vector
            self._bytes += vector.nbytes
            while self._bytes > self.max_bytes:
                _, evicted = self._vectors.popitem(last=False)
                self._bytes -= evicted.nbytes

    def clear(self) -> None:
        with self._lock:
            self._vectors.clear()
            self._bytes = 0
