"""Qdrant points: records to validated points (dense vector, BM25 terms, payload) and points back to records."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mini.errors import InvalidInputError, StoreError
from mini.stores._rows import json_default, vector_matrix
from mini.stores.base import Record
from mini.stores.qdrant.filters import ID_KEY, METADATA_KEY, TEXT_KEY, point_id
from mini.stores.sparse import document_vector
from mini.types import RetrievalResult

if TYPE_CHECKING:
    from qdrant_client import models

# The named sparse vector of keyword search ("" is the unnamed dense vector's name in a dict of vectors).
SPARSE_VECTOR = "bm25"
DENSE_VECTOR = ""

_dump = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=json_default).encode


def to_points(records: Sequence[Record]) -> list[models.PointStruct]:
    """Validated points for a batch, with the dense vector and the keyword terms of the text (CPU only: big
    batches call this in a thread). A text without terms gets no sparse vector."""
    from qdrant_client import models

    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise InvalidInputError("ids within one write must be unique")
    matrix = vector_matrix(records)
    points = []
    for record, vector in zip(records, matrix.tolist(), strict=True):
        if not isinstance(record.id, str) or not record.id:
            raise InvalidInputError(f"id {record.id!r} must be a non-empty string")
        try:
            # Through JSON and back: numpy scalars become numbers, tuples lists, and anything that cannot be
            # stored is refused here, with our error, instead of failing inside the client.
            metadata = json.loads(_dump(dict(record.metadata)))
            text = str(record.text)
            text.encode("utf-8")
            record.id.encode("utf-8")
        except (TypeError, ValueError) as exc:  # UnicodeEncodeError (lone surrogates) is a ValueError
            raise InvalidInputError(f"record {record.id!r} cannot be stored in Qdrant: {exc}") from exc
        vectors: dict[str, Any] = {DENSE_VECTOR: vector}
        terms = document_vector(text)
        if terms:
            vectors[SPARSE_VECTOR] = models.SparseVector(
                indices=list(terms.indices), values=list(terms.values)
            )
        points.append(
            models.PointStruct(
                id=point_id(record.id),
                vector=vectors,
                payload={ID_KEY: record.id, TEXT_KEY: text, METADATA_KEY: metadata},
            )
        )
    return points


def unpack(point: Any) -> tuple[str, str, dict[str, Any]]:
    """(id, text, metadata) of a returned point; points written by others get their payload as metadata."""
    payload = point.payload or {}
    if isinstance(payload.get(ID_KEY), str) and isinstance(payload.get(METADATA_KEY), dict):
        return payload[ID_KEY], str(payload.get(TEXT_KEY) or ""), payload[METADATA_KEY]
    return str(point.id), "", dict(payload)


def dense_only(points: Sequence[models.PointStruct]) -> list[models.PointStruct]:
    """The points without their keyword terms, for a collection made before keyword search (no sparse vector)."""
    return [
        p.model_copy(update={"vector": p.vector[DENSE_VECTOR]}) if isinstance(p.vector, dict) else p
        for p in points
    ]


def records_from_points(points: Sequence[Any], include_vectors: bool) -> list[Record]:
    records = []
    for point in points:
        id_, text, metadata = unpack(point)
        vector = None
        if include_vectors:
            # A dict of vectors when the collection also has the sparse one, a plain list otherwise.
            dense = point.vector.get(DENSE_VECTOR) if isinstance(point.vector, dict) else point.vector
            vector = np.asarray(dense, dtype=np.float32)
        records.append(Record(id=id_, vector=vector, text=text, metadata=metadata))
    return records


def hit(point: Any) -> RetrievalResult:
    """A scored point of a query answer as a search result."""
    id_, text, metadata = unpack(point)
    return RetrievalResult(id=id_, text=text, score=float(point.score), metadata=metadata)


def collection_layout(info: Any, name: str) -> tuple[int, bool]:
    """(dimension, has the keyword sparse vector) of a collection; one this backend cannot use is refused."""
    from qdrant_client import models

    vectors = info.config.params.vectors
    if not isinstance(vectors, models.VectorParams):
        raise StoreError(
            f"Qdrant collection {name!r} has named or no dense vectors; this backend needs one unnamed vector "
            "per point"
        )
    if vectors.distance != models.Distance.COSINE:
        raise StoreError(f"Qdrant collection {name!r} uses {vectors.distance} distance, not Cosine")
    sparse = info.config.params.sparse_vectors or {}
    keyword = SPARSE_VECTOR in sparse and str(sparse[SPARSE_VECTOR].modifier) == "idf"
    return int(vectors.size), keyword
