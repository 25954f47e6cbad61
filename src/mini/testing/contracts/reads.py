"""Store contract checks for reads: batched and concurrent searches, bulk `get`/`count`, and loop lag."""

from __future__ import annotations

import asyncio

import numpy as np

from mini._batching import Coalescer
from mini.stores.base import Record, VectorStoreBackend
from mini.stores.filters import parse_filter
from mini.testing.contracts._common import BackendFactory, unit
from mini.testing.looplag import LoopLagProbe


def _cosines(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    return np.asarray(vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query)))


async def check_search_many_equals_single_searches(make: BackendFactory) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((300, 16)).astype(np.float32)
    backend = make("many")
    await backend.insert(
        [Record(f"r{i}", row, f"text {i}", {"source": f"s{i % 3}"}) for i, row in enumerate(vectors)]
    )
    queries = list(rng.standard_normal((5, 16)).astype(np.float32))
    many = await backend.search_many(queries, top_k=7)
    singles = [await backend.search(q, top_k=7) for q in queries]
    assert [[h.id for h in r] for r in many] == [[h.id for h in r] for r in singles]
    s1 = parse_filter({"source": "s1"})
    filtered = await backend.search_many(queries, top_k=7, filter=s1)
    assert len(filtered) == 5
    for query, ranking in zip(queries, filtered, strict=True):
        single = await backend.search(query, top_k=7, filter=s1)
        assert [h.id for h in ranking] == [h.id for h in single]
        assert len(ranking) == 7 and all(h.metadata["source"] == "s1" for h in ranking)
        assert [h.score for h in ranking] == sorted((h.score for h in ranking), reverse=True)
        best = max(_cosines(vectors, query)[1::3])  # rows 1, 4, 7, ... are the s1 rows
        assert abs(ranking[0].score - best) < 1e-5, (ranking[0].score, best)
    assert await backend.search_many([], top_k=3) == []


async def check_concurrent_searches_each_get_their_own_answer(make: BackendFactory) -> None:
    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((200, 8)).astype(np.float32)
    backend = make("concurrent")
    await backend.insert(
        [Record(f"r{i}", row, "t", {"source": f"s{i % 2}"}) for i, row in enumerate(vectors)]
    )
    batcher = getattr(backend, "_searches", None)  # backends that coalesce searches (mini._batching)
    before = batcher.batches if isinstance(batcher, Coalescer) else 0
    results = await asyncio.gather(*(backend.search(vectors[i], top_k=1 + i % 3) for i in range(64)))
    assert [hits[0].id for hits in results] == [f"r{i}" for i in range(64)]  # each caller its own answer
    assert [len(hits) for hits in results] == [1 + i % 3 for i in range(64)]  # and its own top_k
    if isinstance(batcher, Coalescer):
        assert batcher.batches - before < 64 / 4  # they rode along in a few multi-vector calls
    # Different filters are batched separately and each keeps its own.
    a, b = await asyncio.gather(
        backend.search(vectors[0], top_k=5, filter=parse_filter({"source": "s1"})),
        backend.search(vectors[0], top_k=5, filter=parse_filter({"source": "s0"})),
    )
    assert {h.metadata["source"] for h in a} == {"s1"} and {h.metadata["source"] for h in b} == {"s0"}


async def check_count_get_and_large_id_lists(make: BackendFactory) -> None:
    backend = make("bulk")
    # More ids than one id predicate or batch holds, more rows than one page.
    records = [Record(f"id{i}", unit(i), f"t{i}", {"source": f"s{i % 4}", "n": i}) for i in range(2100)]
    await backend.upsert(records)
    assert await backend.count() == 2100
    assert await backend.count(parse_filter({"source": "s1"})) == 525
    assert await backend.get(ids=[]) == []
    wanted = [f"id{i}" for i in range(0, 2100, 2)] + ["nope"]
    assert len(await backend.existing_ids(wanted)) == 1050
    got = await backend.get(ids=wanted)
    assert sorted(r.id for r in got) == sorted(wanted[:-1])
    assert all(r.vector is None for r in got)
    assert {r.text for r in got} >= {"t0", "t2"}
    (one,) = await backend.get(ids=["id5"], include_vectors=True)
    assert (one.text, one.metadata) == ("t5", {"source": "s1", "n": 5})
    assert one.vector is not None and one.vector.dtype == np.float32
    np.testing.assert_allclose(one.vector, unit(5), atol=1e-6)
    got = await backend.get(ids=wanted, filter=parse_filter({"n": {"$lt": 100}}))
    assert sorted(r.id for r in got) == sorted(f"id{i}" for i in range(0, 100, 2))
    assert len(await backend.get(limit=7)) == 7
    assert len(await backend.get(limit=1100)) == 1100  # across pages
    assert len(await backend.get(ids=wanted, limit=3)) == 3
    everything = await backend.get()
    assert len(everything) == 2100 and len({r.id for r in everything}) == 2100
    with_vectors = await backend.get(filter=parse_filter({"source": "s1"}), include_vectors=True)
    assert len(with_vectors) == 525 and all(r.vector is not None for r in with_vectors)
    assert await backend.delete(ids=wanted) == 1050
    assert await backend.count() == 1050


async def _write_and_search(backend: VectorStoreBackend, records: list[Record], queries: np.ndarray) -> None:
    await backend.upsert(records)  # Python lists: any conversion and the write happen off the loop
    results = await asyncio.gather(*(backend.search(q, top_k=5) for q in queries))
    assert all(len(hits) == 5 for hits in results)
    d3 = parse_filter({"source": "d3"})
    filtered = await asyncio.gather(*(backend.search(q, top_k=5, filter=d3) for q in queries[:16]))
    assert all(len(hits) == 5 and all(h.source == "d3" for h in hits) for hits in filtered)


async def check_64_concurrent_searches_keep_the_loop_responsive(make: BackendFactory) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((2000, 384)).astype(np.float32)
    records = [Record(f"id{i}", row, "t", {"source": f"d{i % 50}"}) for i, row in enumerate(vectors.tolist())]
    queries = rng.standard_normal((64, 384)).astype(np.float32)
    backend = make("lag", dimension=384)
    await backend.upsert(records[:1500])
    # Our own worker threads (and an in-process engine's) compete with the loop thread for two cores, so the
    # OS can pause the loop now and then; a call of ours that blocked the loop would show in every attempt,
    # so one clean attempt of three proves the loop stays free. Each attempt writes 500 rows and searches.
    # (No asyncio debug mode here: its per-task tracebacks would themselves hold the loop for ~100 ms.)
    attempts: list[str] = []
    for _ in range(3):
        probe = LoopLagProbe()
        async with probe:
            await _write_and_search(backend, records[1500:], queries)
        attempts.append(probe.summary())
        if probe.own_max_ms < 50:
            break
    else:
        raise AssertionError("\n".join(attempts))
    assert await backend.count() == 2000
    expected = vectors[17] / np.linalg.norm(vectors[17])
    assert (await backend.search(expected, top_k=1))[0].id == "id17"
    assert (await backend.search(vectors[17], top_k=1))[0].id == "id17"
