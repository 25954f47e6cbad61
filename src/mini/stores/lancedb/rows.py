"""LanceDB rows: records to Arrow tables and back, and the table schema (CPU only: big batches run in threads)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from mini.errors import InvalidInputError, StoreError
from mini.stores._rows import json_default, vector_matrix
from mini.stores.base import Record
from mini.stores.lancedb.sql import ID_COLUMN, METADATA_COLUMN, SOURCE_COLUMN

VECTOR_COLUMN = "vector"
TEXT_COLUMN = "text"


def table_schema(dimension: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field(ID_COLUMN, pa.string(), nullable=False),
            pa.field(VECTOR_COLUMN, pa.list_(pa.float32(), dimension), nullable=False),
            pa.field(TEXT_COLUMN, pa.string()),
            pa.field(SOURCE_COLUMN, pa.string()),
            # Stored by Lance as JSONB; filters read it with json_get/json_extract (see mini.stores.lancedb.sql).
            pa.field(METADATA_COLUMN, pa.json_()),
        ]
    )


def schema_dimension(schema: pa.Schema) -> int:
    if VECTOR_COLUMN not in schema.names:
        raise StoreError(f"the table has no {VECTOR_COLUMN!r} column: it was not created by this backend")
    vector_type = schema.field(VECTOR_COLUMN).type
    if not pa.types.is_fixed_size_list(vector_type):
        raise StoreError(f"column {VECTOR_COLUMN!r} is {vector_type}, not a fixed-size list of floats")
    return int(vector_type.list_size)


def arrow_rows(records: Sequence[Record]) -> pa.Table:
    """The Arrow table for a batch of records (CPU only; big batches call this in a thread)."""
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise InvalidInputError("ids within one write must be unique")
    matrix = vector_matrix(records)
    try:
        dump = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=json_default).encode
        metadata = [dump(r.metadata) for r in records]
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"metadata cannot be stored as JSON: {exc}") from exc
    sources = [s if isinstance(s := r.metadata.get("source"), str) else None for r in records]
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), pa.float32()), matrix.shape[1])
    try:
        return pa.table(
            {
                ID_COLUMN: pa.array(ids, pa.string()),
                VECTOR_COLUMN: vectors,
                TEXT_COLUMN: pa.array([r.text for r in records], pa.string()),
                SOURCE_COLUMN: pa.array(sources, pa.string()),
                METADATA_COLUMN: pa.array(metadata, pa.json_()),
            },
            schema=table_schema(matrix.shape[1]),
        )
    except (pa.ArrowException, UnicodeEncodeError) as exc:
        raise InvalidInputError(f"records cannot be converted for LanceDB: {exc}") from exc


def float_values(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A float column as a numpy array without `to_numpy()` or `combine_chunks()`: in pyarrow 26 both import
    pandas the first time (~0.3-0.6 s of a cold `mini query`, bench/cold_start.py)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    if not pa.types.is_floating(column.type) or column.null_count:
        return np.array(column.to_pylist(), dtype=np.float64)
    dtype = np.dtype(f"f{column.type.bit_width // 8}")
    parts = [
        np.frombuffer(chunk.buffers()[1], dtype=dtype, count=len(chunk), offset=chunk.offset * dtype.itemsize)
        for chunk in chunks
        if len(chunk)
    ]
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def records_from_arrow(rows: pa.Table, include_vectors: bool) -> list[Record]:
    """Rows read back as `Record`s (CPU only: big reads call this in a thread)."""
    ids = rows.column(ID_COLUMN).to_pylist()
    texts = rows.column(TEXT_COLUMN).to_pylist()
    metadata = [json.loads(m or "{}") for m in rows.column(METADATA_COLUMN).to_pylist()]
    if include_vectors and rows.num_rows:
        column = rows.column(VECTOR_COLUMN)
        flat = pa.chunked_array([chunk.flatten() for chunk in column.chunks], column.type.value_type)
        matrix = float_values(flat).reshape(rows.num_rows, column.type.list_size)
        vectors: list[Any] = list(matrix.astype(np.float32, copy=False))
    else:
        vectors = [None] * rows.num_rows
    return [
        Record(id=i, vector=v, text=t or "", metadata=m)
        for i, v, t, m in zip(ids, vectors, texts, metadata, strict=True)
    ]
