"""Row conversion shared by the store backends: vectors into one float32 matrix, metadata into JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mini.errors import DimensionMismatchError, InvalidInputError
from mini.stores.base import Record

# Rows per np.asarray call: one call over 20k Python lists holds the GIL ~150 ms (measured for LanceDB),
# which stalls the event loop even from a worker thread; between slices the GIL is released.
CONVERT_ROWS = 256


def vector_matrix(records: Sequence[Record]) -> np.ndarray:
    """The vectors as one float32 (n, d) array; empty, ragged or non-finite input is rejected with its row."""
    expected = len(records[0].vector)
    if expected == 0:
        raise InvalidInputError("vectors must be non-empty 1-D sequences of numbers")
    matrix = np.empty((len(records), expected), dtype=np.float32)
    for start in range(0, len(records), CONVERT_ROWS):
        chunk = records[start : start + CONVERT_ROWS]
        try:
            matrix[start : start + len(chunk)] = np.asarray([r.vector for r in chunk], dtype=np.float32)
        except (ValueError, TypeError) as exc:
            for i, record in enumerate(chunk, start):
                if len(record.vector) != expected:
                    raise DimensionMismatchError(expected, len(record.vector), f"row {i}") from exc
            raise InvalidInputError(f"vectors must be 1-D sequences of numbers: {exc}") from exc
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        raise InvalidInputError(f"vector of row {int(np.flatnonzero(~finite)[0])} contains NaN or infinity")
    return matrix


def json_default(value: Any) -> Any:
    """`json.dumps(default=...)`: numpy scalars (page numbers, scores) become Python numbers."""
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        return item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
