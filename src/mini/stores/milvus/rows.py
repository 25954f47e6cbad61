"""Milvus rows: records to validated Milvus rows and answers back to records and rankings (CPU only)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from mini.errors import InvalidInputError, StoreError
from mini.stores._rows import json_default, vector_matrix
from mini.stores.base import Record
from mini.stores.filters import utf8_size
from mini.stores.milvus.expr import (
    HAS_SOURCE_FIELD,
    ID_FIELD,
    KINDS_FIELD,
    METADATA_FIELD,
    SOURCE_FIELD,
    kind_of,
)
from mini.types import RetrievalResult

VECTOR_FIELD = "vector"
TEXT_FIELD = "text"
# Keyword search: Milvus's BM25 function turns `text` into a sparse term-frequency vector in this field on
# every write and the query text into one at search time (see the backend's analyzer).
SPARSE_FIELD = "text_bm25"
MAX_ID_BYTES = 512
MAX_VARCHAR_BYTES = 65_535  # Milvus's VARCHAR limit, counted in UTF-8 bytes
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1  # JSON integers Milvus can store


def _check_ints(value: Any) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise InvalidInputError(f"metadata integer {value} does not fit in 64 bits (Milvus JSON limit)")
    elif isinstance(value, list):
        for item in value:
            _check_ints(item)
    elif isinstance(value, dict):
        for item in value.values():
            _check_ints(item)


def milvus_rows(records: Sequence[Record]) -> tuple[int, list[dict[str, Any]]]:
    """(dimension, Milvus rows) for a batch, validated (CPU only: big batches call this in a thread)."""
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise InvalidInputError("ids within one write must be unique")
    matrix = vector_matrix(records)
    dump = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=json_default).encode
    rows = []
    for i, (record, vector) in enumerate(zip(records, matrix, strict=True)):
        if not isinstance(record.id, str) or not record.id:
            raise InvalidInputError(f"id of row {i} must be a non-empty string")
        if utf8_size(record.id, f"id of row {i}") > MAX_ID_BYTES:
            raise InvalidInputError(f"id of row {i} is longer than Milvus's {MAX_ID_BYTES} bytes")
        if not isinstance(record.text, str):
            raise InvalidInputError(f"text of row {i} must be a string")
        if utf8_size(record.text, f"text of row {i}") > MAX_VARCHAR_BYTES:
            raise InvalidInputError(
                f"text of row {i} ({record.id!r}) is longer than Milvus's {MAX_VARCHAR_BYTES} bytes; "
                "split it into smaller chunks"
            )
        try:  # JSON-normalised: numpy scalars become numbers, tuples lists; sets, NaN fail here
            metadata = json.loads(dump(dict(record.metadata)))
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"metadata of row {i} cannot be stored as JSON: {exc}") from exc
        _check_ints(metadata)
        source = metadata.get("source")
        has_source = isinstance(source, str)
        if has_source and utf8_size(source, "source") > MAX_VARCHAR_BYTES:
            raise InvalidInputError(f"metadata['source'] of row {i} is longer than {MAX_VARCHAR_BYTES} bytes")
        rows.append(
            {
                ID_FIELD: record.id,
                VECTOR_FIELD: vector,
                TEXT_FIELD: record.text,
                SOURCE_FIELD: source if has_source else "",
                HAS_SOURCE_FIELD: has_source,
                METADATA_FIELD: metadata,
                KINDS_FIELD: {key: kind_of(value) for key, value in metadata.items()},
            }
        )
    return int(matrix.shape[1]), rows


def records_from_rows(rows: list[dict[str, Any]], include_vectors: bool) -> list[Record]:
    return [
        Record(
            id=row[ID_FIELD],
            vector=np.asarray(row[VECTOR_FIELD], dtype=np.float32) if include_vectors else None,
            text=row.get(TEXT_FIELD) or "",
            metadata=dict(row.get(METADATA_FIELD) or {}),
        )
        for row in rows
    ]


def search_rankings(result: Any) -> list[list[RetrievalResult]]:
    rankings = []
    for hits in result:
        ranking = []
        for hit in hits:
            entity = hit.get("entity") or {}
            ranking.append(
                RetrievalResult(
                    id=str(hit.get("id", entity.get(ID_FIELD))),
                    text=entity.get(TEXT_FIELD) or "",
                    score=float(hit["distance"]),  # COSINE: Milvus reports the similarity itself
                    metadata=dict(entity.get(METADATA_FIELD) or {}),
                )
            )
        ranking.sort(key=lambda hit: -hit.score)
        rankings.append(ranking)
    return rankings


def keyword_rankings(result: Any) -> list[list[RetrievalResult]]:
    result_rankings = search_rankings(result)
    # Servers report the BM25 score as the distance; Milvus Lite reports its negation (its sparse index
    # sorts distances ascending). BM25 scores are never negative, so the magnitude is the score either way.
    return [
        sorted(
            (RetrievalResult(hit.id, hit.text, abs(hit.score), hit.metadata) for hit in ranking),
            key=lambda hit: -hit.score,
        )
        for ranking in result_rankings
    ]


def count_of(result: Any) -> int:
    return int(result[0]["count(*)"]) if result else 0


def id_column(result: Any) -> list[str]:
    return [row[ID_FIELD] for row in result]


_FIELDS = (ID_FIELD, VECTOR_FIELD, TEXT_FIELD, SOURCE_FIELD, HAS_SOURCE_FIELD, METADATA_FIELD, KINDS_FIELD)


def schema_dimension(description: dict[str, Any]) -> int:
    """The vector dimension of a collection this backend made; a foreign schema is refused up front."""
    fields = {field.get("name"): field for field in description.get("fields", [])}
    missing = [name for name in _FIELDS if name not in fields]
    dim = (fields.get(VECTOR_FIELD, {}).get("params") or {}).get("dim")
    if missing or dim is None:
        raise StoreError(
            f"collection {description.get('collection_name')!r} was not created by this backend "
            f"(missing fields: {', '.join(missing) or VECTOR_FIELD + ' dimension'})"
        )
    return int(dim)


def has_keyword_index(description: dict[str, Any]) -> bool:
    """Whether the collection has our BM25 function (`text` -> sparse field); collections made before keyword
    search was added do not, and cannot get it (Milvus cannot add a function to an existing collection)."""
    for function in description.get("functions") or []:
        kind = function.get("type")
        if (
            getattr(kind, "name", kind) in ("BM25", 1)
            and function.get("input_field_names") == [TEXT_FIELD]
            and function.get("output_field_names") == [SPARSE_FIELD]
        ):
            return True
    return False
