"""The LanceDB read path without the `lancedb` package (mini.stores.lancedb.native), in a fresh interpreter:
searches and counts import neither lancedb's Python layer nor pandas, and a later `import lancedb` (the user's,
or ours for a write) gets the same engine module and works on the same table."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mini.stores.lancedb.rows import float_values

_CHILD = r"""
import asyncio, json, sys
import numpy as np
from mini.stores.base import VectorStore

async def main(path):
    store = VectorStore(path, collection_name="t")
    dense = await store.search_async(np.eye(8, dtype=np.float32)[1], top_k=2)
    words = await store.keyword_search_async("harbour ferry", top_k=2)
    count = await store.count_async()
    light = [name for name in ("lancedb.db", "lance_namespace", "pandas") if name in sys.modules]
    import lancedb
    from mini.stores.lancedb import native
    same = lancedb._lancedb is native.extension()
    await store.upsert_async(np.eye(8, dtype=np.float32)[3:4], ["a new row"], ids=["new"])
    print(json.dumps({"dense": [h.id for h in dense], "words": [h.id for h in words], "count": count,
                      "light": light, "same": same, "after_write": await store.count_async()}))

asyncio.run(main(sys.argv[1]))
"""


def test_reads_skip_the_lancedb_package_and_a_later_import_shares_the_engine(tmp_path: Path) -> None:
    from mini.stores.base import VectorStore

    store = VectorStore(str(tmp_path), collection_name="t")
    texts = ["the harbour ferry leaves at nine", "library hours", "glass collection", "budget"]
    vectors = np.eye(8, dtype=np.float32)[: len(texts)]
    store.upsert(vectors, texts, ids=["ferry", "library", "glass", "budget"])
    asyncio.run(store.backend.optimize())  # builds the full-text index, as ingestion does
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINI_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got == {
        "dense": ["library", got["dense"][1]],
        "words": ["ferry"],
        "count": 4,
        "light": [],
        "same": True,
        "after_write": 5,
    }


def test_float_values_reads_chunked_and_sliced_columns_without_to_numpy() -> None:
    values = np.arange(6, dtype=np.float32)
    array = pa.array(values)
    chunked = pa.chunked_array([array.slice(1, 2), array.slice(3, 3)])
    assert float_values(chunked).tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert float_values(array.slice(4)).tolist() == [4.0, 5.0]
    assert float_values(pa.chunked_array([], pa.float32())).tolist() == []
    assert float_values(pa.array([1.0, None])).tolist()[0] == 1.0  # nulls: the slow path, not a crash


async def test_without_the_native_path_the_store_works_through_lancedb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unverified lancedb release (or MINI_LANCEDB_NATIVE=0) takes lancedb's own Python API for everything."""
    from mini.stores.base import VectorStore
    from mini.stores.lancedb import native

    monkeypatch.setattr(native, "extension", lambda: None)
    store = VectorStore(str(tmp_path), collection_name="t")
    vectors = np.eye(8, dtype=np.float32)[:3]
    await store.upsert_async(vectors, ["harbour ferry", "library hours", "glass"], ids=["a", "b", "c"])
    assert [h.id for h in await store.search_async(vectors[1], top_k=1)] == ["b"]
    assert [h.id for h in await store.keyword_search_async("ferry", top_k=1)] == ["a"]
    assert await store.count_async() == 3
    assert store.backend._native is False
    await store.delete_async(ids=["a"])
    assert await store.count_async() == 2
