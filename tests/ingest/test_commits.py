"""Ingestion commits on LanceDB: new files are appended (no merge), and a first ingestion skips the per-commit id
lookup only until another writer commits."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np

from mini.ingest.state import Committer
from mini.ingest.units import Unit
from mini.stores.base import Record
from mini.stores.lancedb import LanceDBBackend


def unit(name: str) -> Unit:
    """A finished file unit with one row, not stored before."""
    origin = f"/docs/{name}.txt"
    vector = np.random.default_rng(len(name)).standard_normal(8).astype(np.float32)
    row = Record(f"id-{name}", vector, f"text of {name}", {"origin": origin, "fingerprint": f"fp-{name}"})
    return Unit(origin, "file", fingerprint=f"fp-{name}", records=[row])


def counting(backend: LanceDBBackend, calls: collections.Counter[str]) -> None:
    for name in ("append", "upsert", "existing_ids"):
        method = getattr(backend, name)

        async def counted(*args: Any, _method: Any = method, _name: str = name) -> Any:
            calls[_name] += 1
            return await _method(*args)

        setattr(backend, name, counted)


async def test_a_first_ingestion_appends_and_looks_ids_up_once_another_writer_committed(
    tmp_path: Path,
) -> None:
    ours = LanceDBBackend(str(tmp_path), collection_name="t")
    other = LanceDBBackend(str(tmp_path), collection_name="t")  # another process's view of the store
    calls: collections.Counter[str] = collections.Counter()
    counting(ours, calls)
    committer = Committer(ours, fatal=lambda exc: False, timed=lambda stage, since: None)
    committer.start(empty=True, state=await committer.write_state())

    assert await committer.write([unit("a"), unit("b")]) == [None, None]
    assert await committer.write([unit("c")]) == [None]
    assert calls == {"append": 2}  # no merges, no id lookups: only our own rows are stored

    await other.upsert(unit("d").records)  # someone else commits, one of the ids we are about to write
    assert await committer.write([unit("d"), unit("e")]) == [None, None]
    assert calls["existing_ids"] == 1 and calls["upsert"] == 1  # looked up, found, not appended
    await committer.write([unit("f")])
    assert calls["existing_ids"] == 2 and calls["append"] == 3  # and it keeps looking

    ids = collections.Counter(r.id for r in await other.get())
    assert sorted(ids) == [f"id-{n}" for n in "abcdef"] and max(ids.values()) == 1
    await ours.aclose()
    await other.aclose()


async def test_a_run_too_small_to_compact_still_builds_the_keyword_index(tmp_path: Path) -> None:
    """So the first query after `mini ingest` of a few files does not build it (and import lancedb) itself."""
    from mini.stores.lancedb.backend import _has_fts_index

    backend = LanceDBBackend(str(tmp_path), collection_name="t")
    committer = Committer(backend, fatal=lambda exc: False, timed=lambda stage, since: None)
    committer.start(empty=True, state=await committer.write_state())
    await committer.write([unit("a"), unit("b")])
    table = await backend._get_table()
    assert table is not None and not await _has_fts_index(table)
    await committer.finish()
    assert await _has_fts_index(table)
    await backend.aclose()
