"""LanceDBBackend beyond the store contract (tests/stores/test_contracts.py): names, no I/O before use, error
translation, foreign tables, the FTS and IVF indexes `optimize` builds, and `replace` in one commit."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
import pytest

from mini.errors import DuplicateIdError, InvalidInputError, StoreError
from mini.stores.base import Record, VectorStore, VectorStoreBackend
from mini.stores.filters import parse_filter
from mini.stores.lancedb import LanceDBBackend, map_lancedb_errors
from mini.stores.lancedb.keyword import query_words
from mini.testing.contracts import rows, unit


def make(path: Path, name: str = "t", dimension: int | None = None, **kwargs: Any) -> LanceDBBackend:
    return LanceDBBackend(str(path), collection_name=name, dimension=dimension, token=None, **kwargs)


def test_backend_satisfies_the_protocol_and_declares_capabilities(tmp_path: Path) -> None:
    backend = make(tmp_path)
    assert isinstance(backend, VectorStoreBackend)
    assert backend.supports_hybrid is True  # keyword_search: the native FTS index
    assert isinstance(VectorStore(uri=str(tmp_path), collection_name="t").backend, LanceDBBackend)


def test_construction_does_no_io_and_validates_names(tmp_path: Path) -> None:
    target = tmp_path / "not-yet"
    backend = LanceDBBackend(f"lancedb://{target}", collection_name="docs-v2_1", dimension=8, token="ignored")
    assert not target.exists()
    assert backend.path == str(target)
    assert backend.dimension == 8
    for bad in ["", "a b", "../x", "a/b", "naïve", "x;drop"]:
        with pytest.raises(InvalidInputError):
            make(tmp_path, name=bad)
    with pytest.raises(InvalidInputError):
        make(tmp_path, dimension=0)


async def test_reads_and_optimize_of_a_missing_table_create_nothing(tmp_path: Path) -> None:
    backend = make(tmp_path)
    assert await backend.count() == 0
    await backend.optimize()
    await backend.drop()
    db = await lancedb.connect_async(str(tmp_path))
    assert (await db.list_tables()).tables == []


async def test_map_lancedb_errors_translates_and_chains() -> None:
    original = RuntimeError("lance error: boom")
    with pytest.raises(StoreError) as info, map_lancedb_errors("search"):
        raise original
    assert info.value.__cause__ is original
    with pytest.raises(DuplicateIdError), map_lancedb_errors("insert"):
        raise DuplicateIdError(["x"])


async def test_a_foreign_table_without_a_vector_column_raises_store_error(tmp_path: Path) -> None:
    db = await lancedb.connect_async(str(tmp_path))
    await db.create_table("t", pa.table({"id": ["a"]}))
    with pytest.raises(StoreError):
        await make(tmp_path).count()


async def vector_indices(path: Path) -> list[Any]:
    # A fresh handle: an older one would keep answering from the table version it opened.
    table = await (await lancedb.connect_async(str(path))).open_table("t")
    return [ix for ix in await table.list_indices() if ix.columns == ["vector"]]


async def test_optimize_builds_the_full_text_index_and_keeps_it_current(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    backend = make(tmp_path)
    texts = ["the runners were running", "a quiet library", "glass is recycled monthly"]
    await backend.insert([Record(f"t{i}", rng.standard_normal(8), t, {}) for i, t in enumerate(texts)])
    await backend.optimize()
    table = await (await lancedb.connect_async(str(tmp_path))).open_table("t")
    (fts,) = [ix for ix in await table.list_indices() if ix.columns == ["text"]]
    assert fts.index_type == "FTS"
    assert [h.id for h in await backend.keyword_search("run", top_k=5)] == ["t0"]  # stemmed
    await backend.insert([Record("t9", rng.standard_normal(8), "he runs daily", {})])
    assert {h.id for h in await backend.keyword_search("run", top_k=5)} == {"t0", "t9"}  # unindexed rows too
    await backend.optimize()
    stats = await table.index_stats(fts.name)
    assert stats is not None and stats.num_unindexed_rows == 0


async def test_optimize_builds_a_cosine_ivf_flat_index_once_past_the_threshold(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((400, 8)).astype(np.float32)
    backend = make(tmp_path, index_threshold=300)
    await backend.insert([Record(f"i{i}", vectors[i], "x", {"n": i}) for i in range(200)])
    for start in (200, 250):  # below the threshold: compaction only
        await backend.optimize()
        assert await vector_indices(tmp_path) == []
        await backend.insert([Record(f"i{i}", vectors[i], "x", {"n": i}) for i in range(start, start + 50)])
    await backend.optimize()
    await backend.optimize()  # an existing index is not rebuilt
    indices = await vector_indices(tmp_path)
    assert [(ix.columns, ix.index_type) for ix in indices] == [(["vector"], "IvfFlat")]
    assert indices[0].index_details["metric_type"] == "COSINE"
    hits = await backend.search(vectors[123], top_k=3, filter=parse_filter({"n": {"$gte": 100}}))
    assert hits[0].id == "i123"
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    # Rows written after the index are found too (searched flat until the next optimize folds them in).
    await backend.insert([Record(f"i{i}", vectors[i], "x", {"n": i}) for i in range(300, 400)])
    assert (await backend.search(vectors[350], top_k=1))[0].id == "i350"
    await backend.optimize()
    assert (await backend.search(vectors[350], top_k=1))[0].id == "i350"
    assert await backend.count() == 400


async def test_replace_swaps_a_scope_in_one_commit(tmp_path: Path) -> None:
    backend = make(tmp_path)
    await backend.upsert(rows(6))  # sources s0, s1, s2 with two rows each
    db = await lancedb.connect_async(str(tmp_path), read_consistency_interval=timedelta(0))
    table = await db.open_table("t")
    version = await table.version()
    new = [
        Record("r0", unit(1), "text 0 again", {"source": "s0"}),
        Record("x", unit(2), "new", {"source": "s0"}),
    ]
    assert await backend.replace(new, scope=parse_filter({"source": "s0"})) == 1  # type: ignore[arg-type]
    assert await table.version() == version + 1  # one commit: never a moment with the scope half replaced


async def test_cached_keyword_scores_rank_like_lancedb_and_see_writes(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    texts = [
        "The runners were running to the library",
        "A quiet library with a budget for 2025",
        "Glass is recycled monthly; the library recycles paper",
        "Parking permits cost 40 EUR per year",
        "The lighthouse run starts at the harbour",
    ]
    backend = make(tmp_path)
    backend._keyword_scores.settle = 0.0  # cache every version at once (by default, once it stood 1 s)
    await backend.insert([Record(f"t{i}", rng.standard_normal(8), t, {"i": i}) for i, t in enumerate(texts)])
    await backend.optimize()
    table = await backend._get_table()
    assert table is not None
    queries = ["library budget", "Running to the LIBRARY's run?\nrun run", "recycled glass-paper", "nothing"]
    # Concurrent questions share one batch; each ranking (ids, scores, rows) is LanceDB's own query's.
    cached = await asyncio.gather(*(backend.keyword_search(q, top_k=3) for q in queries))
    for query, hits in zip(queries, cached, strict=True):
        direct = await backend._keyword_direct(table, query, 3)
        assert [(h.id, h.text, h.metadata) for h in hits] == [(h.id, h.text, h.metadata) for h in direct]
        assert [h.score for h in hits] == pytest.approx([h.score for h in direct], rel=1e-5)
    # Writes change every BM25 score: a new table version starts a new cache, whoever wrote it.
    await backend.insert([Record("t9", rng.standard_normal(8), "budget budget library", {})])
    assert [h.id for h in await backend.keyword_search("library budget", top_k=1)] == ["t9"]
    await make(tmp_path).delete(ids=["t9"])
    assert "t9" not in {h.id for h in await backend.keyword_search("library budget", top_k=5)}


def test_keyword_query_words_are_cut_only_where_lancedb_cuts_tokens() -> None:
    # ASCII non-alphanumerics are token boundaries for LanceDB's simple tokenizer; other characters are left
    # to LanceDB (a word may hold several of its tokens, never part of one).
    assert query_words("Don't-stop\nRUN run_fast École?") == Counter(
        {"don": 1, "t": 1, "stop": 1, "run": 2, "fast": 1, "École": 1}
    )
