"""Vector-search hits to rankings: each distinct row converted once, yet no two hits share a mutable dict."""

from __future__ import annotations

import json

import pyarrow as pa

from mini.stores.lancedb.hits import rankings_from_hits


def _hits(rows: list[tuple[int, str, dict[str, object], float]]) -> pa.Table:
    """A LanceDB multi-vector search result: (query index, id, metadata, cosine distance) per hit."""
    return pa.table(
        {
            "id": [r[1] for r in rows],
            "text": [f"text of {r[1]}" for r in rows],
            "metadata": [json.dumps(r[2]) for r in rows],
            "_distance": pa.array([r[3] for r in rows], pa.float32()),
            "query_index": [r[0] for r in rows],
        }
    )


def test_rankings_from_hits_per_query_best_first_with_own_metadata() -> None:
    flat, nested = {"source": "a.md", "page": 1}, {"source": "b.md", "tags": ["x"]}
    hits = _hits([(0, "b", nested, 0.5), (0, "a", flat, 0.25), (1, "a", flat, 0.75), (1, "b", nested, 0.0)])

    first, second = rankings_from_hits(hits, 2)

    assert [(h.id, h.score) for h in first] == [("a", 0.75), ("b", 0.5)]
    assert [(h.id, h.score) for h in second] == [("b", 1.0), ("a", 0.25)]
    assert first[0].text == "text of a" and first[0].metadata == flat and second[0].metadata == nested
    # The same row in two queries' rankings: equal metadata, never the same (mutable) object.
    assert first[0].metadata is not second[1].metadata
    assert first[1].metadata is not second[0].metadata
    assert first[1].metadata["tags"] is not second[0].metadata["tags"]
