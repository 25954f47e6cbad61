"""`mini.documents` over the embedded LanceDB store on disk, filled by the real ingestion (simulated embeddings
over real HTTP): JSONL rows are one document, deletes take every row or nothing, listings read in slices."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mini import AgenticRAG, Document, VectorStore
from mini.documents import (
    DeleteReport,
    DocumentInfo,
    delete_documents,
    document_stats,
    list_documents,
    repair_documents,
)
from mini.errors import DocumentNotFoundError, InvalidInputError
from mini.stores.base import VectorStoreBackend, delete_duplicates
from tests.query.conftest import make_rag

ROWS = [
    {"_id": "ferry", "title": "Ferry", "text": "The Zephyr ferry leaves the north pier every 40 minutes."},
    {"_id": "kayak", "title": "Kayaks", "text": "Kayak rentals at the marina cost 15 dollars an hour."},
    {"_id": "light", "title": "Lighthouse", "text": "The Osprey Rock lighthouse was built in 1871."},
    {"_id": "market", "title": "Market", "text": "The fish market opens at 5 a.m. on weekdays."},
]


def write_corpus(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True)
    files = {
        "jsonl": folder / "faq.jsonl",
        "md": folder / "notes.md",
        "txt": folder / "history.txt",
    }
    files["jsonl"].write_text("".join(json.dumps(row) + "\n" for row in ROWS), encoding="utf-8")
    files["md"].write_text("# Notes\n\nThe harbour master keeps the tide tables.\n", encoding="utf-8")
    files["txt"].write_text("The town was founded in 1702 by fishermen.\n", encoding="utf-8")
    return files


@pytest.fixture
async def indexed(sim: Any, tmp_path: Path) -> AsyncIterator[tuple[AgenticRAG, dict[str, Path]]]:
    """Three files (one a 4-row JSONL) and one in-memory Document, ingested for real."""
    files = write_corpus(tmp_path / "corpus")
    rag = make_rag(sim, tmp_path / "store")
    report = await rag.index_documents_async(
        [tmp_path / "corpus", Document("Ferry tickets cost 9 dollars.", "memo-1")]
    )
    assert report.ok and report.files_added == 4, report.failures
    yield rag, files
    await rag.aclose()


def origin(path: Path) -> str:
    return path.as_posix()  # ingestion names a file by its absolute path (tmp_path is absolute)


async def test_a_jsonl_file_is_listed_once_with_the_chunks_of_all_its_rows(
    indexed: tuple[AgenticRAG, dict[str, Path]],
) -> None:
    rag, files = indexed
    store = rag.vector_store
    jsonl = origin(files["jsonl"])
    rows = await store.get_async(filter={"origin": jsonl})
    # The premise: the rows are stored as `file#row`, so grouping by `source` would list four documents.
    assert sorted(r.source for r in rows) == sorted(f"{jsonl}#{row['_id']}" for row in ROWS)

    documents = await list_documents(store)

    assert [d.source for d in documents] == sorted(
        [jsonl, origin(files["md"]), origin(files["txt"]), "memo-1"]
    )
    [faq] = [d for d in documents if d.source == jsonl]
    assert faq.chunks == len(rows) == len(ROWS)
    assert faq.fingerprint == rows[0].metadata["fingerprint"] and faq.fingerprint.count(".") == 2
    assert faq.indexed_at is None  # ingestion records no time
    assert faq.file_type == "jsonl"
    assert sum(d.chunks for d in documents) == await store.count_async()
    assert faq.to_dict() == {
        "source": jsonl,
        "chunks": len(ROWS),
        "fingerprint": faq.fingerprint,
        "indexed_at": None,
        "file_type": "jsonl",
    }


async def test_listing_in_slices_reads_every_row_exactly_once(
    indexed: tuple[AgenticRAG, dict[str, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = indexed[0].vector_store
    whole = await list_documents(store)
    total = await store.count_async()
    reads: list[int] = []
    real_get = store.get_async

    async def counting_get(*args: Any, **kwargs: Any) -> Any:
        rows = await real_get(*args, **kwargs)
        reads.append(len(rows))
        return rows

    monkeypatch.setattr(store, "get_async", counting_get)
    for page_rows in (1, 3):
        reads.clear()
        assert await list_documents(store, page_rows=page_rows) == whole
        # One read per slice, and together the slices hold each row once: none missed, none read twice.
        assert len(reads) == math.ceil(total / page_rows) and sum(reads) == total


async def test_rows_with_any_ids_are_listed_when_read_in_slices(tmp_path: Path) -> None:
    store = VectorStore(str(tmp_path), collection_name="hand")
    ids = ["0", "ZZZ", "doc-1", "fff", "ÿ-last", "~tilde", "a" * 40]  # hex and not, ids below and above
    vectors = np.eye(len(ids), 8, dtype=np.float32)
    metadata = [{"source": "hand.md"} for _ in ids[:-1]] + [{}]  # the last row names no document
    await store.upsert_async(vectors, [f"text {i}" for i in ids], metadata, ids=ids)

    assert await list_documents(store, page_rows=1) == [DocumentInfo("hand.md", len(ids) - 1)]
    stats = await document_stats(store, page_rows=2)
    assert (stats.documents, stats.chunks, stats.unattributed_chunks) == (1, len(ids), 1)
    await store.aclose()


async def test_deleting_a_jsonl_file_removes_every_row_and_nothing_else(
    indexed: tuple[AgenticRAG, dict[str, Path]],
) -> None:
    rag, files = indexed
    store = rag.vector_store
    jsonl = origin(files["jsonl"])
    before = await store.count_async()
    others = {d.source: d.chunks for d in await list_documents(store) if d.source != jsonl}

    report = await delete_documents(store, [jsonl])

    assert report == DeleteReport(deleted={jsonl: len(ROWS)}, chunks=len(ROWS))
    assert await store.count_async() == before - len(ROWS)
    assert await store.count_async(filter={"origin": jsonl}) == 0
    assert {d.source: d.chunks for d in await list_documents(store)} == others
    # Ingestion sees it gone: indexing the folder again adds it back (it is not skipped as unchanged).
    again = await rag.index_documents_async([files["jsonl"].parent])
    assert (again.files_added, again.files_skipped) == (1, 2)
    assert await store.count_async() == before


async def test_several_documents_go_in_one_call_named_as_typed(
    indexed: tuple[AgenticRAG, dict[str, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    rag, files = indexed
    store = rag.vector_store
    monkeypatch.chdir(files["md"].parent.parent)
    md, txt = origin(files["md"]), origin(files["txt"])

    report = await delete_documents(store, ["corpus/notes.md", "./corpus/../corpus/history.txt", "memo-1"])

    assert set(report.deleted) == {md, txt, "memo-1"}  # keyed by the source as listed
    assert report.chunks == sum(report.deleted.values()) >= 3
    assert [d.source for d in await list_documents(store)] == [origin(files["jsonl"])]
    assert report.to_dict()["documents"] == 3


async def test_an_unknown_source_raises_naming_it_and_nothing_is_deleted(
    indexed: tuple[AgenticRAG, dict[str, Path]],
) -> None:
    rag, files = indexed
    store = rag.vector_store
    before = await store.count_async()
    jsonl = origin(files["jsonl"])

    with pytest.raises(DocumentNotFoundError) as raised:
        await delete_documents(store, [jsonl, "missing.md", origin(files["md"])])
    assert raised.value.sources == ["missing.md"]
    assert "'missing.md'" in str(raised.value) and "nothing was deleted" in str(raised.value)
    # One row of a JSONL file is not a document: deleting it alone would not survive re-ingestion.
    with pytest.raises(DocumentNotFoundError, match="part of the document"):
        await delete_documents(store, [f"{jsonl}#kayak"])
    assert await store.count_async() == before


async def test_bad_arguments_are_invalid_input(indexed: tuple[AgenticRAG, dict[str, Path]]) -> None:
    store = indexed[0].vector_store
    for sources in ([], "memo-1", [""]):
        with pytest.raises(InvalidInputError):
            await delete_documents(store, sources)


async def test_an_empty_store_says_so(tmp_path: Path) -> None:
    store = VectorStore(str(tmp_path / "nothing"), collection_name="docs")
    assert await list_documents(store) == []
    with pytest.raises(DocumentNotFoundError, match="the store is empty"):
        await delete_documents(store, ["a.md"])
    stats = await document_stats(store)
    assert (stats.documents, stats.chunks, stats.by_type) == (0, 0, {})


async def test_stats_count_documents_chunks_and_types(indexed: tuple[AgenticRAG, dict[str, Path]]) -> None:
    store = indexed[0].vector_store
    stats = await document_stats(store)
    assert (stats.documents, stats.chunks) == (4, await store.count_async())
    assert stats.by_type == {"jsonl": 1, "md": 1, "other": 1, "txt": 1}  # memo-1 has no file type
    data = stats.to_dict()
    assert data["store"] == {"uri": store.uri, "collection": "sim"}
    assert json.loads(json.dumps(data)) == data


async def test_indexed_at_is_the_latest_time_rows_record(tmp_path: Path) -> None:
    store = VectorStore(str(tmp_path), collection_name="dated")
    stamps = [1_700_000_000, "2024-05-01T12:00:00+00:00", "not a date"]
    metadata = [{"source": "a.md", "indexed_at": s} for s in stamps]
    await store.upsert_async(np.eye(3, 4, dtype=np.float32), ["x", "y", "z"], metadata)
    [document] = await list_documents(store)
    assert document.to_dict()["indexed_at"] == "2024-05-01T12:00:00+00:00"
    await store.aclose()


# -- duplicate rows (issue 18: concurrent ingestions of older versions stored ids twice) ----------------------


async def plant_copies(store: VectorStore, ids: list[str]) -> None:
    """A second copy of each of these rows, appended as an older version did (no merge, no lock)."""
    import lancedb

    from mini.stores.lancedb.sql import id_in

    db = await lancedb.connect_async(str(store.uri))
    table = await db.open_table(str(store.collection_name))
    await table.add(await table.query().where(id_in(ids)).to_arrow())


async def copies(store: VectorStore) -> dict[str, int]:
    counted: dict[str, int] = {}
    for row in await store.get_async():
        counted[row.id] = counted.get(row.id, 0) + 1
    return counted


async def test_repair_removes_duplicate_rows_and_a_dry_run_only_counts_them(
    indexed: tuple[AgenticRAG, dict[str, Path]],
) -> None:
    rag, files = indexed
    store = rag.vector_store
    before = await list_documents(store)
    jsonl_ids = [r.id for r in await store.get_async(filter={"origin": origin(files["jsonl"])})]
    md_ids = [r.id for r in await store.get_async(filter={"origin": origin(files["md"])})]
    await plant_copies(store, [*jsonl_ids[:2], *md_ids])
    total = await store.count_async()

    dry = await repair_documents(store, dry_run=True, page_rows=2)  # several slices: copies share a slice
    assert (dry.duplicate_ids, dry.duplicate_rows, dry.removed, dry.dry_run) == (3, 3, 0, True)
    assert dry.by_document == {origin(files["jsonl"]): 2, origin(files["md"]): 1}
    assert dry.rows_checked == total and await store.count_async() == total

    done = await repair_documents(store)
    assert (done.duplicate_rows, done.removed) == (3, 3)
    assert max((await copies(store)).values()) == 1 and await store.count_async() == total - 3
    assert await list_documents(store) == before
    assert (await repair_documents(store)).duplicate_rows == 0
    data = done.to_dict()
    assert data["removed"] == 3 and {"source": origin(files["md"]), "duplicate_rows": 1} in data["documents"]


class _NoOwnDedupe:
    """A backend without `delete_duplicates` of its own (as a plug-in would be): the neutral path runs."""

    def __init__(self, inner: VectorStoreBackend) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "delete_duplicates":
            raise AttributeError(name)
        return getattr(self._inner, name)


async def test_the_backend_neutral_repair_keeps_one_whole_copy_of_each_id(
    indexed: tuple[AgenticRAG, dict[str, Path]],
) -> None:
    store = indexed[0].vector_store
    rows = {r.id: r for r in await store.get_async(include_vectors=True)}
    planted = sorted(rows)[:3]
    await plant_copies(store, planted)

    assert await delete_duplicates(_NoOwnDedupe(store.backend), [*planted, "absent"]) == 3  # type: ignore[arg-type]

    assert max((await copies(store)).values()) == 1 and len(await copies(store)) == len(rows)
    for row in await store.get_async(ids=planted, include_vectors=True):
        kept = rows[row.id]
        assert (row.text, row.metadata) == (kept.text, kept.metadata)
        np.testing.assert_allclose(row.vector, kept.vector)


async def test_ingestion_removes_the_duplicate_rows_of_the_files_it_finds_unchanged(
    indexed: tuple[AgenticRAG, dict[str, Path]], tmp_path: Path
) -> None:
    rag, files = indexed
    store = rag.vector_store
    total = await store.count_async()
    await plant_copies(store, [r.id for r in await store.get_async(filter={"origin": origin(files["txt"])})])
    assert await store.count_async() > total

    report = await rag.index_documents_async([tmp_path / "corpus"])

    assert report.ok and report.files_skipped == 3 and report.chunks_embedded == 0
    assert await store.count_async() == total and max((await copies(store)).values()) == 1
