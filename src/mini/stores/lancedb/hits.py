"""Vector-search hits from Arrow to `RetrievalResult`s, each distinct row's text and metadata converted once.

At 1,024 concurrent questions the coalesced multi-vector searches hand back thousands of hits per call, and
concurrent questions mostly find the same popular chunks. Converting every hit (`to_pylist` of its text,
`json.loads` of its metadata) was the costliest function of the query path at that width (cProfile on CPU
time, `bench/scale_process.py`); reading the ids first and converting each distinct row once took 14% off the
event loop's CPU per question there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from mini.stores.lancedb.rows import TEXT_COLUMN
from mini.stores.lancedb.sql import ID_COLUMN, METADATA_COLUMN
from mini.types import RetrievalResult

_SCALARS = (str, int, float, bool, type(None))


def rankings_from_hits(hits: pa.Table, queries: int) -> list[list[RetrievalResult]]:
    """One ranking per query vector (best first) from a LanceDB vector search's result: columns id, text,
    metadata (JSON), `_distance` (cosine) and, when several vectors were searched, `query_index`."""
    ids = hits.column(ID_COLUMN).to_pylist()
    distances = hits.column("_distance").to_pylist()
    owners = hits.column("query_index").to_pylist() if queries > 1 else [0] * len(ids)
    # Each id's first position (walked backwards, the first occurrence is written last), without a Python loop.
    first = dict(zip(reversed(ids), range(len(ids) - 1, -1, -1), strict=True))
    keys, distinct = (ids, hits) if len(first) == len(ids) else (list(first), hits.take(list(first.values())))
    texts = distinct.column(TEXT_COLUMN).to_pylist()
    metadata = [metadata_decoder(m) for m in distinct.column(METADATA_COLUMN).to_pylist()]
    rows = {id_: (text or "", meta) for id_, text, meta in zip(keys, texts, metadata, strict=True)}
    rankings: list[list[RetrievalResult]] = [[] for _ in range(queries)]
    for owner, id_, distance in zip(owners, ids, distances, strict=True):
        text, meta = rows[id_]
        rankings[owner].append(RetrievalResult(id_, text, 1.0 - distance, meta()))
    for ranking in rankings:
        ranking.sort(key=lambda hit: -hit.score)
    return rankings


def metadata_decoder(raw: str | None) -> Callable[[], Any]:
    """A function returning a fresh dict of this metadata per hit: a shallow copy of one decoded dict when its
    values are all scalars (then no two hits share anything mutable), else a decode of its own."""
    decoded = json.loads(raw or "{}")
    if isinstance(decoded, dict) and all(isinstance(v, _SCALARS) for v in decoded.values()):
        return decoded.copy
    return lambda: json.loads(raw or "{}")
