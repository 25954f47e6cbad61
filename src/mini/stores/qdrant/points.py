"""Qdrant points: records to validated points (dense vector, BM25 terms, payload) and points back to records."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mini.errors import InvalidInputError, StoreError
from mini.stores._rows import json_default, vector_matrix
from mini.stores.base import Record
from mini.stores.qdrant.filters import ID_KEY, METADATA_KEY, TEXT_KEY, point_id
from mini.stores.sparse import AVG_DOC_TERMS, document_vector, query_vector
from mini.types import RetrievalResult

if TYPE_CHECKING:
    from qdrant_client import models

# The named sparse vectors of keyword search, one per collection; its name records how its terms are made
# ("" is the unnamed dense vector's name in a dict of vectors):
# - "bm25": computed here (`mini.stores.sparse`), the "client" mode;
# - "bm25-server": Qdrant's own BM25 inference (the server turns `Document(model="qdrant/bm25")` into terms:
#   its word tokenizer, English stop words and Snowball stemmer), the "server" mode.
SPARSE_VECTOR = "bm25"
SERVER_BM25_VECTOR = "bm25-server"
SERVER_BM25_MODEL = "qdrant/bm25"
# Qdrant's default expected length is 256 terms; our chunks average AVG_DOC_TERMS (see mini.stores.sparse).
SERVER_BM25_OPTIONS: dict[str, Any] = {"avg_len": AVG_DOC_TERMS}
DENSE_VECTOR = ""
KeywordMode = Literal["client", "server"]
_VECTOR_OF: dict[KeywordMode, str] = {"client": SPARSE_VECTOR, "server": SERVER_BM25_VECTOR}

_dump = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=json_default).encode


def keyword_vector(mode: KeywordMode) -> str:
    """The sparse vector's name for a keyword mode."""
    return _VECTOR_OF[mode]


def to_points(records: Sequence[Record], keyword: KeywordMode | None = "client") -> list[models.PointStruct]:
    """Validated points for a batch, with the dense vector and the keyword terms of the text for the
    collection's keyword mode (CPU only: big batches call this in a thread). A text without terms gets no
    sparse vector; `keyword=None` (a collection made before keyword search) gets none at all."""
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
        if keyword is not None:
            sparse = sparse_entry(text, keyword)
            if sparse is not None:
                vectors[keyword_vector(keyword)] = sparse
        points.append(
            models.PointStruct(
                id=point_id(record.id),
                vector=vectors if keyword is not None else vector,  # no sparse vector: the unnamed one alone
                payload={ID_KEY: record.id, TEXT_KEY: text, METADATA_KEY: metadata},
            )
        )
    return points


def sparse_entry(text: str, mode: KeywordMode) -> Any:
    """The keyword side of a text: our BM25 terms ("client"), or the text for Qdrant to analyse ("server");
    None for a text without terms (the server would store an empty vector, a wasted entry)."""
    from qdrant_client import models

    if mode == "server":
        if not query_vector(text):  # no word outside our stop list (cheap: the words' indices are cached)
            return None
        return models.Document(text=text, model=SERVER_BM25_MODEL, options=SERVER_BM25_OPTIONS)
    terms = document_vector(text)
    if not terms:
        return None
    return models.SparseVector(indices=list(terms.indices), values=list(terms.values))


def keyword_query(text: str, mode: KeywordMode) -> Any:
    """The query side, or None when the text has no terms (a query of stop words matches nothing, whichever
    the mode: the check is ours, so both modes agree on it)."""
    from qdrant_client import models

    terms = query_vector(text)
    if not terms:
        return None
    if mode == "server":
        return models.Document(text=text, model=SERVER_BM25_MODEL, options=SERVER_BM25_OPTIONS)
    return models.SparseVector(indices=list(terms.indices), values=list(terms.values))


def unpack(point: Any) -> tuple[str, str, dict[str, Any]]:
    """(id, text, metadata) of a returned point; points written by others get their payload as metadata."""
    payload = point.payload or {}
    if isinstance(payload.get(ID_KEY), str) and isinstance(payload.get(METADATA_KEY), dict):
        return payload[ID_KEY], str(payload.get(TEXT_KEY) or ""), payload[METADATA_KEY]
    return str(point.id), "", dict(payload)


def for_mode(points: Sequence[models.PointStruct], mode: KeywordMode | None) -> list[models.PointStruct]:
    """The points as the collection's keyword mode wants them. Points are made for the mode expected when
    they were converted; a collection created meanwhile by another process may have the other mode, or
    (made before keyword search) none."""
    out = []
    for point in points:
        vectors = point.vector if isinstance(point.vector, dict) else {DENSE_VECTOR: point.vector}
        if mode is None:
            out.append(point.model_copy(update={"vector": vectors[DENSE_VECTOR]}))
            continue
        wanted = keyword_vector(mode)
        if set(vectors) <= {DENSE_VECTOR, wanted}:
            out.append(point)
            continue
        text = str((point.payload or {}).get(TEXT_KEY) or "")
        update = {DENSE_VECTOR: vectors[DENSE_VECTOR]}
        sparse = sparse_entry(text, mode)
        if sparse is not None:
            update[wanted] = sparse
        out.append(point.model_copy(update={"vector": update}))
    return out


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


def collection_layout(info: Any, name: str) -> tuple[int, KeywordMode | None]:
    """(dimension, keyword mode) of a collection: the mode from the name of its sparse vector with the IDF
    modifier, None without one (made before keyword search). A collection this backend cannot use is
    refused."""
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
    with_idf = {key for key, params in sparse.items() if str(params.modifier) == "idf"}
    mode: KeywordMode | None = next((m for m, key in _VECTOR_OF.items() if key in with_idf), None)
    return int(vectors.size), mode


@functools.cache
def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split("."):
        digits = "".join(ch for ch in part if ch.isdigit()) if part else ""
        if not digits or not part.startswith(digits):
            break
        parts.append(int(digits))
    return tuple(parts)


# Qdrant's server-side BM25 (`Document(model="qdrant/bm25")` turned into terms by the server) arrived in 1.15.3
# (qdrant-client passes such documents through to servers from that version on).
SERVER_BM25_SINCE = (1, 15, 3)


def server_has_bm25(version: str | None) -> bool:
    """Whether a Qdrant server of this version (`GET /`'s "version") analyses `qdrant/bm25` documents."""
    return bool(version) and _version_tuple(str(version)) >= SERVER_BM25_SINCE
