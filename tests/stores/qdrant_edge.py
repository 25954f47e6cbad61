"""`EdgeQdrant`: the Qdrant REST routes `QdrantBackend` uses, answered by Qdrant's own engine (qdrant-edge-py:
segments, filters, HNSW, IDF, BM25 inference) instead of qdrant-client's local mode.

No Qdrant server binary can be installed here; qdrant-edge is the server's shard code without its HTTP API
and without collections. So this module does what the server's REST layer does: parse the JSON (with
qdrant-client's `models`, as the wire format's reference), turn it into the engine's requests, one
`EdgeShard` per collection in a temporary directory, and render the engine's answers as the server's JSON.
What stays fake is that layer and the collection bookkeeping; everything that decides which points match
and how they score is Qdrant's.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe
from qdrant_client import models

from tests.stores.qdrant_rest import RestError, RestQdrant

# The REST field schema names of payload indexes (`PUT .../index`) as the engine's schema types.
_SCHEMA_TYPES = {
    "keyword": qe.PayloadSchemaType.Keyword,
    "integer": qe.PayloadSchemaType.Integer,
    "float": qe.PayloadSchemaType.Float,
    "bool": qe.PayloadSchemaType.Bool,
    "datetime": qe.PayloadSchemaType.Datetime,
    "uuid": qe.PayloadSchemaType.Uuid,
    "text": qe.PayloadSchemaType.Text,
    "geo": qe.PayloadSchemaType.Geo,
}
_DEFAULT_LIMIT = 10  # the server's default `limit` for queries and scrolls


@dataclass
class _Collection:
    shard: qe.EdgeShard
    config: qe.EdgeConfig
    path: Path


class EdgeQdrant(RestQdrant):
    """A Qdrant REST server whose collections are qdrant-edge shards; `close()` drops them all.

    Engine errors answer 400 "Wrong input: ..." (the server's status for a bad vector, name or filter); a
    missing collection 404 and an existing one 409, worded like the server."""

    def __init__(self, api_key: str | None, version: str | None = None) -> None:
        super().__init__(api_key, version)
        self.root = Path(tempfile.mkdtemp(prefix="edge-qdrant-"))
        self.collections: dict[str, _Collection] = {}
        self._dirs = itertools.count()
        self._bm25_models: dict[tuple[tuple[str, Any], ...], qe.Bm25] = {}

    def close(self) -> None:
        for collection in self.collections.values():
            collection.shard.close()
        self.collections.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    # --- BM25 inference: qdrant-edge's `Bm25`, configured from the document's options as the server does

    def _bm25(self, document: models.Document, *, query: bool) -> models.SparseVector:
        options = tuple(sorted((document.options or {}).items()))
        model = self._bm25_models.get(options)
        if model is None:
            try:
                model = self._bm25_models[options] = qe.Bm25(qe.Bm25Config(**dict(options)))
            except (TypeError, ValueError) as exc:
                raise RestError(400, f"Wrong input: bad BM25 options {dict(options)}: {exc}") from exc
        terms = model.embed_query(document.text) if query else model.embed_document(document.text)
        return models.SparseVector(indices=list(terms.indices), values=list(terms.values))

    # --- the REST calls

    def answer(self, method: str, name: str, body: dict[str, Any]) -> Any:
        if method == "info":
            if self.version is None:
                raise RestError(404, "route not found")
            return {"title": "qdrant - vector search engine", "version": self.version}
        if method == "create_collection":
            return self._create(name, models.CreateCollection.model_validate(body))
        collection = self.collections.get(name)
        if collection is None:
            raise RestError(404, f"Not found: Collection `{name}` doesn't exist!")
        try:
            return self._answer(method, name, collection, body)
        except RestError:
            raise
        except Exception as exc:  # the engine raises plain Exceptions carrying the server's message
            raise RestError(400, f"Wrong input: {exc}") from exc

    def _answer(self, method: str, name: str, collection: _Collection, body: dict[str, Any]) -> Any:
        shard = collection.shard
        if method == "get_collection":
            return _collection_info(collection)
        if method == "delete_collection":
            shard.close()
            del self.collections[name]
            shutil.rmtree(collection.path, ignore_errors=True)
            return True
        if method == "create_payload_index":
            index = models.CreateFieldIndex.model_validate(body)
            self.indexes.append(index.field_name)
            schema = index.field_schema  # a type name, or index params whose `type` names it
            kind = schema if isinstance(schema, models.PayloadSchemaType) else getattr(schema, "type", None)
            engine_type = _SCHEMA_TYPES.get(getattr(kind, "value", ""))
            if engine_type is None:
                raise RestError(400, f"Wrong input: unsupported field schema {schema!r}")
            shard.update(qe.UpdateOperation.create_field_index(index.field_name, engine_type))
            return _updated()
        if method == "upsert":
            points = [self._point(p) for p in models.PointsList.model_validate(body).points]
            shard.update(qe.UpdateOperation.upsert_points(points))
            return _updated()
        if method == "delete":
            if "points" in body:
                ids = models.PointIdsList.model_validate(body).points
                shard.update(qe.UpdateOperation.delete_points(list(ids)))
            else:
                flt = to_edge_filter(models.FilterSelector.model_validate(body).filter)
                shard.update(qe.UpdateOperation.delete_points_by_filter(flt or qe.Filter()))
            return _updated()
        if method == "retrieve":
            req = models.PointRequest.model_validate(body)
            found = shard.retrieve(
                list(req.ids), with_payload=_flag(req.with_payload), with_vector=_flag(req.with_vector)
            )
            return [_record(r) for r in found]
        if method == "count":
            req_count = models.CountRequest.model_validate(body)
            exact = True if req_count.exact is None else req_count.exact
            return {
                "count": shard.count(qe.CountRequest(exact=exact, filter=to_edge_filter(req_count.filter)))
            }
        if method == "scroll":
            req_scroll = models.ScrollRequest.model_validate(body)
            page, next_offset = shard.scroll(
                qe.ScrollRequest(
                    offset=req_scroll.offset,
                    limit=req_scroll.limit or _DEFAULT_LIMIT,
                    filter=to_edge_filter(req_scroll.filter),
                    with_payload=_flag(req_scroll.with_payload),
                    with_vector=_flag(req_scroll.with_vector),
                )
            )
            offset = None if next_offset is None else _json_id(next_offset)
            return {"points": [_record(r) for r in page], "next_page_offset": offset}
        if method == "query_batch_points":
            batch = models.QueryRequestBatch.model_validate(body)
            requests = [self._query(search) for search in batch.searches]
            answers = shard.query_batch(qe.QueryBatchRequest(requests))
            return [{"points": [_scored(p) for p in points]} for points in answers]
        raise RestError(404, f"no route for {method}")

    def _create(self, name: str, create: models.CreateCollection) -> bool:
        if name in self.collections:
            raise RestError(409, f"Wrong input: Collection `{name}` already exists!")
        dense = create.vectors
        if not isinstance(dense, models.VectorParams):
            raise RestError(400, "Wrong input: this fake serves one unnamed dense vector per collection")
        sparse = {
            key: qe.EdgeSparseVectorParams(
                modifier=qe.Modifier.Idf if params.modifier == models.Modifier.IDF else None
            )
            for key, params in (create.sparse_vectors or {}).items()
        }
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dense.size, distance=getattr(qe.Distance, dense.distance.value)),
            sparse_vectors=sparse,
        )
        path = self.root / f"{next(self._dirs)}"
        self.collections[name] = _Collection(qe.EdgeShard.create(str(path), config), config, path)
        return True

    def _point(self, point: models.PointStruct) -> qe.Point:
        vector: Any = point.vector
        if isinstance(vector, dict):
            vector = {key: _vector(self.analyse(value, query=False)) for key, value in vector.items()}
        else:
            vector = _vector(vector)
        return qe.Point(_engine_id(point.id), vector, point.payload)

    def _query(self, search: models.QueryRequest) -> qe.QueryRequest:
        query = search.query
        nearest = query.nearest if isinstance(query, models.NearestQuery) else query
        if nearest is None or isinstance(query, (models.FusionQuery, models.OrderByQuery)):
            raise RestError(400, f"Wrong input: this fake answers nearest queries only, not {query!r}")
        vector = _vector(self.analyse(nearest, query=True))
        return qe.QueryRequest(
            limit=search.limit or _DEFAULT_LIMIT,
            offset=search.offset,
            query=qe.Query.Nearest(vector, using=search.using or None),
            filter=to_edge_filter(search.filter),
            score_threshold=search.score_threshold,
            with_payload=_flag(search.with_payload),
            with_vector=_flag(search.with_vector),
        )


# --- REST JSON (qdrant-client models) to the engine's types


def to_edge_filter(flt: models.Filter | None) -> qe.Filter | None:
    """The engine's filter for a REST filter: must / should / must_not (and min_should), recursively."""
    if flt is None:
        return None
    min_should = None
    if flt.min_should is not None:
        min_should = qe.MinShould(_conditions(flt.min_should.conditions), flt.min_should.min_count)
    return qe.Filter(
        must=_conditions(flt.must) if flt.must is not None else None,
        should=_conditions(flt.should) if flt.should is not None else None,
        must_not=_conditions(flt.must_not) if flt.must_not is not None else None,
        min_should=min_should,
    )


def _conditions(items: Any) -> list[Any]:
    return [_condition(c) for c in (items if isinstance(items, list) else [items])]


def _condition(condition: Any) -> Any:
    if isinstance(condition, models.Filter):
        return to_edge_filter(condition)
    if isinstance(condition, models.FieldCondition):
        return qe.FieldCondition(
            condition.key,
            match=_match(condition.match) if condition.match is not None else None,
            range=_range(condition.range) if condition.range is not None else None,
            is_empty=condition.is_empty,
            is_null=condition.is_null,
            values_count=_values_count(condition.values_count),
        )
    if isinstance(condition, models.IsEmptyCondition):
        return qe.IsEmptyCondition(condition.is_empty.key)
    if isinstance(condition, models.IsNullCondition):
        return qe.IsNullCondition(condition.is_null.key)
    if isinstance(condition, models.HasIdCondition):
        return qe.HasIdCondition({_engine_id(i) for i in condition.has_id})
    if isinstance(condition, models.HasVectorCondition):
        return qe.HasVectorCondition(condition.has_vector)
    if isinstance(condition, models.NestedCondition):
        return qe.NestedCondition(
            condition.nested.key, to_edge_filter(condition.nested.filter) or qe.Filter()
        )
    raise RestError(400, f"Wrong input: this fake does not translate the condition {condition!r}")


def _match(match: Any) -> Any:
    if isinstance(match, models.MatchValue):
        # qdrant-edge-py 0.9.0 reads a Python bool as the integer 1/0 (True would match a stored 1 and never
        # a stored true); a numpy bool reaches the engine as the boolean the server parses from JSON `true`.
        value = np.bool_(match.value) if isinstance(match.value, bool) else match.value
        return qe.MatchValue(value)
    if isinstance(match, models.MatchAny):
        return qe.MatchAny(list(match.any))
    if isinstance(match, models.MatchExcept):
        return qe.MatchExcept(list(match.except_))
    if isinstance(match, models.MatchText):
        return qe.MatchText(match.text)
    raise RestError(400, f"Wrong input: this fake does not translate the match {match!r}")


def _range(rng: Any) -> Any:
    kind = qe.RangeDateTime if isinstance(rng, models.DatetimeRange) else qe.RangeFloat
    bounds = {op: getattr(rng, op) for op in ("gt", "gte", "lt", "lte")}
    if kind is qe.RangeDateTime:
        bounds = {op: None if v is None else str(v) for op, v in bounds.items()}
    return kind(**bounds)


def _values_count(count: models.ValuesCount | None) -> qe.ValuesCount | None:
    if count is None:
        return None
    return qe.ValuesCount(lt=count.lt, gt=count.gt, lte=count.lte, gte=count.gte)


def _vector(value: Any) -> Any:
    if isinstance(value, models.SparseVector):
        return qe.SparseVector(list(value.indices), [float(v) for v in value.values])
    if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
        return [float(v) for v in value]
    raise RestError(400, f"Wrong input: this fake does not translate the vector input {value!r}")


def _engine_id(point_id: int | str) -> int | str:
    """Point ids as the server reads them: unsigned ints, or UUIDs in any spelling (canonical here)."""
    if isinstance(point_id, int):
        return point_id
    try:
        return str(uuid.UUID(point_id))
    except ValueError as exc:
        raise RestError(400, f"Wrong input: {point_id!r} is not a valid point ID") from exc


def _flag(value: Any) -> bool:
    """with_payload / with_vector: the fake passes booleans only (selectors are not used by the backend)."""
    if value is None or isinstance(value, bool):
        return bool(value)
    raise RestError(400, f"Wrong input: this fake does not translate the selector {value!r}")


# --- the engine's answers as the server's JSON


def _json_id(point_id: Any) -> int | str:
    return point_id if isinstance(point_id, int) else str(point_id)


def _json_vector(vector: Any) -> Any:
    if vector is None:
        return None
    if isinstance(vector, dict):
        return {key: _json_vector(value) for key, value in vector.items()}
    if isinstance(vector, qe.SparseVector):
        return {"indices": list(vector.indices), "values": list(vector.values)}
    return list(vector)


def _record(record: qe.Record) -> dict[str, Any]:
    return {
        "id": _json_id(record.id),
        "payload": record.payload,
        "vector": _json_vector(record.vector),
        "shard_key": None,
        "order_value": record.order_value,
    }


def _scored(point: qe.ScoredPoint) -> dict[str, Any]:
    return {
        "id": _json_id(point.id),
        "version": point.version,
        "score": point.score,
        "payload": point.payload,
        "vector": _json_vector(point.vector),
        "shard_key": None,
        "order_value": point.order_value,
    }


def _enum_name(value: Any) -> str:
    """The member name of one of the engine's enums (they have no `.name`; str() is "Type.Member")."""
    return str(value).rpartition(".")[2]


def _updated() -> dict[str, Any]:
    return {"operation_id": 0, "status": "completed"}


def _collection_info(collection: _Collection) -> dict[str, Any]:
    """`GET /collections/{name}`: the vectors' layout from the shard's config, the counts from the engine."""
    info = collection.shard.info()
    config = collection.config
    dense = config.vectors[""]
    sparse = {
        key: {"modifier": "idf" if params.modifier == qe.Modifier.Idf else None}
        for key, params in config.sparse_vectors.items()
    }
    schema = {
        key: {"data_type": _enum_name(index.data_type).lower(), "points": index.points}
        for key, index in info.payload_schema.items()
    }
    return {
        "status": "green",
        "optimizer_status": "ok",
        "points_count": info.points_count,
        "indexed_vectors_count": info.indexed_vectors_count,
        "segments_count": info.segments_count,
        "config": {
            "params": {
                "vectors": {"size": dense.size, "distance": _enum_name(dense.distance)},
                "sparse_vectors": sparse,
            },
            "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000},
            "optimizer_config": {
                "deleted_threshold": 0.2,
                "vacuum_min_vector_number": 1000,
                "default_segment_number": 0,
                "flush_interval_sec": 5,
            },
        },
        "payload_schema": schema,
    }
