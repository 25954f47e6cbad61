"""Store contract check for `keyword_search` (backends with `supports_hybrid`): BM25 ranking, filters, writes."""

from __future__ import annotations

import asyncio
from typing import Any

from mini.errors import InvalidInputError, UnsupportedFilterError
from mini.stores.base import Record, VectorStoreBackend
from mini.stores.filters import matches
from mini.testing.contracts._common import BackendFactory, expect_error, has_string_range, parsed, unit

# "zebra" is twice in k0 and once in k1, at the same length, so every BM25 ranks k0 first; the other rows share
# no word with it. k5 has no text at all.
KEYWORD_ROWS: list[tuple[str, str, dict[str, Any]]] = [
    ("k0", "zebra river zebra", {"source": "a", "year": 2020}),
    ("k1", "zebra river town", {"source": "b", "year": 2021}),
    ("k2", "Quarterly budget figures for the town council", {"source": "a", "year": 2022}),
    ("k3", "Council meeting notes about the budget", {"source": "b", "year": 2023}),
    ("k4", "Recycling schedule and parks rules", {"source": "a"}),
    ("k5", "", {}),
]

KEYWORD_FILTERS: list[tuple[dict[str, Any], str]] = [
    ({"source": "b"}, "zebra"),
    ({"source": {"$ne": "b"}}, "zebra budget parks"),
    ({"year": {"$gte": 2021}}, "zebra town budget"),
    ({"year": {"$in": [2020, 2023]}}, "zebra budget"),
    ({"id": {"$in": ["k0", "k3"]}}, "zebra budget"),
    ({"$or": [{"source": "a"}, {"year": 2023}]}, "zebra budget"),
    ({"source": {"$gt": "a"}}, "zebra budget"),
    ({"missing": "x"}, "zebra"),
]


def _ids(hits: list[Any]) -> list[str]:
    return [h.id for h in hits]


async def _check_filters(backend: VectorStoreBackend) -> None:
    for spec, query in KEYWORD_FILTERS:
        node = parsed(spec)
        try:
            got = await backend.keyword_search(query, top_k=10, filter=node)
        except UnsupportedFilterError:
            assert has_string_range(node), spec
            continue
        unfiltered = await backend.keyword_search(query, top_k=10)
        expected = {h.id for h in unfiltered if matches(node, {**h.metadata, "id": h.id})}
        # As sets: an engine may compute IDF over the filtered rows only, which can move scores and ties.
        assert set(_ids(got)) == expected, spec
        dense = await backend.search(unit(0), top_k=10, filter=node)
        assert set(_ids(got)) <= set(_ids(dense)), spec


async def check_keyword_search(make: BackendFactory) -> None:
    """`keyword_search` (backends with `supports_hybrid`; others pass untested): BM25 order, only rows sharing
    a term, top_k, filters as in dense search, case-insensitive, concurrent callers, writes, upserts, deletes
    and replaces visible, and the same answers after reopening."""
    backend = make("keyword")
    if not backend.supports_hybrid:
        return
    assert await backend.keyword_search("zebra", top_k=3) == []  # no collection yet: empty, nothing created
    assert backend.dimension is None
    await backend.insert([Record(i, unit(n), text, meta) for n, (i, text, meta) in enumerate(KEYWORD_ROWS)])
    hits = await backend.keyword_search("zebra", top_k=10)
    assert _ids(hits) == ["k0", "k1"], hits
    assert hits[0].score > hits[1].score > 0
    assert (hits[0].text, hits[0].metadata) == ("zebra river zebra", {"source": "a", "year": 2020})
    assert _ids(await backend.keyword_search("ZEBRA", top_k=10)) == ["k0", "k1"]
    assert _ids(await backend.keyword_search("zebra", top_k=1)) == ["k0"]
    assert _ids(await backend.keyword_search("zebra town", top_k=10))[0] == "k1"  # the row with both terms
    assert await backend.keyword_search("xylophone", top_k=5) == []
    assert await backend.keyword_search("the and of", top_k=5) == []  # stop words only: no terms
    assert await backend.keyword_search("!!!", top_k=5) == []
    budget = await backend.keyword_search("budget council", top_k=10)
    assert set(_ids(budget)) == {"k2", "k3"}
    assert [h.score for h in budget] == sorted((h.score for h in budget), reverse=True)
    everything = "zebra budget parks"
    assert set(_ids(await backend.keyword_search(everything, top_k=10))) == {"k0", "k1", "k2", "k3", "k4"}
    assert len(await backend.keyword_search(everything, top_k=3)) == 3
    await expect_error(InvalidInputError, backend.keyword_search("zebra", top_k=0), "top_k=0")
    await _check_filters(backend)
    # Concurrent callers each get their own answer.
    queries = ["zebra", "council", "parks", "town"] * 8
    alone = {q: _ids(await backend.keyword_search(q, top_k=2)) for q in queries[:4]}
    results = await asyncio.gather(*(backend.keyword_search(q, top_k=2) for q in queries))
    assert [_ids(r) for r in results] == [alone[q] for q in queries]
    # The same answers from a new object after this one closed (the index persists).
    before = await backend.keyword_search("zebra budget", top_k=5)
    await backend.aclose()
    after = await make("keyword").keyword_search("zebra budget", top_k=5)
    assert _ids(after) == _ids(before)
    assert all(
        abs(a.score - b.score) < 1e-5 * max(1.0, abs(b.score)) for a, b in zip(after, before, strict=True)
    )
    # Writes reach the keyword index: new text matches, replaced text no longer does, deleted rows vanish.
    await backend.upsert([Record("k2", unit(2), "zebra parks", {"source": "a", "year": 2022})])
    assert set(_ids(await backend.keyword_search("budget", top_k=10))) == {"k3"}
    assert set(_ids(await backend.keyword_search("zebra", top_k=10))) == {"k0", "k1", "k2"}
    assert await backend.delete(ids=["k1"]) == 1
    assert set(_ids(await backend.keyword_search("zebra", top_k=10))) == {"k0", "k2"}
    await backend.replace([], scope=parsed({"source": "a"}))
    assert await backend.keyword_search("zebra", top_k=10) == []
