"""The ingestion pipeline against real components: the simulated embeddings server over HTTP and LanceDB on disk."""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from mini import AgenticRAG, EmbeddingModel, VectorStore
from mini.errors import AuthenticationError, InvalidInputError
from mini.ingest.cache import EmbeddingCache
from mini.ingest.pipeline import Ingestor
from mini.ingest.report import IngestProgress
from mini.testing.corpus import write_corpus
from mini.types import Document
from tests.aiohttp_app import serving
from tests.conftest import SAMPLE_CORPUS

KEY = "sim"


def embedder(sim: Any, **remote: Any) -> EmbeddingModel:
    return EmbeddingModel("openai:sim-embed", base_url=sim.base_url, api_key=KEY, dimension=384, **remote)


def ingestor(sim: Any, store_dir: Path, *, max_retries: int | None = None, **options: Any) -> Ingestor:
    model = embedder(sim, max_retries=max_retries)
    return Ingestor(VectorStore(str(store_dir), collection_name="t"), model, **options)


def embedded(sim: Any) -> tuple[int, int]:
    stats = sim.stats()["embeddings"]
    return stats["requests"], stats["inputs_embedded"]


async def unique_chunks(sim: Any, corpus: Path, tmp_path: Path) -> int:
    """The number of distinct chunks of `corpus`, from a clean ingestion into a fresh store."""
    fresh = ingestor(sim, tmp_path / "reference")
    report = await fresh.run([corpus])
    assert report.ok
    return await fresh.store.count_async()


async def test_chunks_are_batched_across_files_with_bounded_requests_in_flight(
    sim: Any, tmp_path: Path
) -> None:
    corpus = tmp_path / "docs"
    for i in range(60):  # 60 one-chunk files
        (corpus / f"n{i}.txt").parent.mkdir(exist_ok=True)
        (corpus / f"n{i}.txt").write_text(f"Note {i}: the ferry number {i} leaves at {i} o'clock.")
    sim.configure(embed_ms=40)
    report = await ingestor(sim, tmp_path / "store", batch_size=16, concurrency=2).run([corpus])
    assert (report.files_added, report.chunks_added, report.chunks_embedded) == (60, 60, 60)
    requests, inputs = embedded(sim)
    assert inputs == 60
    # Batches span files: 60 texts need at least 4 requests of 16; one per file would be 60.
    assert math.ceil(60 / 16) <= requests == report.embedding_requests <= 8
    assert sim.stats()["embeddings"]["peak_in_flight"] <= 2


async def test_rerun_is_free_and_a_changed_file_reembeds_only_its_new_chunks(
    sim: Any, tmp_path: Path
) -> None:
    corpus = tmp_path / "docs"
    write_corpus(corpus, 30)
    ing = ingestor(sim, tmp_path / "store")
    first = await ing.run([corpus])
    rows = await ing.store.count_async()
    assert (first.files_added, first.chunks_added) == (30, rows)
    assert first.chunks_embedded == rows

    sim.reset()
    again = await ing.run([corpus])
    assert (again.files_skipped, again.chunks_added, again.chunks_embedded) == (30, 0, 0)
    assert again.chunks_unchanged == rows
    assert embedded(sim) == (0, 0)
    assert await ing.store.count_async() == rows

    # Edit one file: append a paragraph. Only the new chunk(s) are embedded; old rows of the file that the
    # new version no longer produces are removed in the same commit.
    target = corpus / "doc00007.txt"
    source = target.as_posix()
    before = {r.id for r in await ing.store.get_async(filter={"source": source})}
    target.write_text(target.read_text() + "\n\nA new closing paragraph about purple zebras on the ferry.")
    sim.reset()
    changed = await ing.run([corpus])
    after = {r.id for r in await ing.store.get_async(filter={"source": source})}
    assert (changed.files_updated, changed.files_skipped) == (1, 29)
    _, inputs = embedded(sim)
    assert inputs == changed.chunks_embedded == len(after - before) >= 1
    assert changed.chunks_removed == len(before - after)
    assert await ing.store.count_async() == rows - len(before - after) + len(after - before)
    stored = await ing.store.get_async(filter={"source": source})
    assert any("purple zebras" in r.text for r in stored)


async def test_repeated_text_is_embedded_once_and_the_cache_outlives_the_run(
    sim: Any, tmp_path: Path
) -> None:
    boilerplate = "Every page of this handbook is issued by the harbour office and reviewed each year."
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.txt").write_text(boilerplate)
    cache = EmbeddingCache()
    store_a = tmp_path / "s1"
    report = await ingestor(sim, store_a, cache=cache).run([tmp_path / f"{n}.txt" for n in "abc"])
    assert (report.files_added, report.chunks_added) == (3, 3)  # three rows: ids include the source
    assert report.chunks_embedded == 1 and report.cache_hits == 2
    assert embedded(sim)[1] == 1
    # A second store with the same model: the vector comes from the cache.
    again = await ingestor(sim, tmp_path / "s2", cache=cache).run([tmp_path / "a.txt"])
    assert again.files_added == 1 and again.chunks_embedded == 0
    assert embedded(sim)[1] == 1


async def test_rate_limits_and_a_server_cap_complete_with_exact_row_count(sim: Any, tmp_path: Path) -> None:
    corpus = tmp_path / "docs"
    write_corpus(corpus, 300, chars=900)
    expected = await unique_chunks(sim, corpus, tmp_path)
    sim.configure(embed_ms=20, rate_limit_fraction=0.1, max_in_flight=16, retry_after=0.01, seed=5)
    sim.reset()
    # Faults are drawn in arrival order, which concurrency varies: 8 retries make a call that exhausts them
    # (0.1**9 from the random 429s) negligible, so the outcome does not depend on the draw.
    ing = ingestor(sim, tmp_path / "store", batch_size=4, concurrency=32, max_retries=8)
    report = await ing.run([corpus])
    assert report.ok, report.failures
    assert sim.stats()["embeddings"]["rate_limited"] > 0  # the faults really happened
    assert await ing.store.count_async() == expected == report.chunks_added


async def test_bad_files_are_reported_with_reasons_and_the_rest_ingested(sim: Any, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# Ferry\n\nThe ferry to Gull Island leaves every hour from pier 3.\n")
    (docs / "page.pdf").write_bytes((SAMPLE_CORPUS / "recycling_schedule.pdf").read_bytes())
    (docs / "corrupt.pdf").write_bytes(b"%PDF-1.4 truncated garbage \x00\x01")
    (docs / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (docs / "latin1.txt").write_bytes(
        "Caf\xe9 opening hours: 8 to 5, cr\xe8me br\xfbl\xe9e on Fridays.".encode("cp1252")
    )
    (docs / "empty.txt").write_text("  \n")
    ing = ingestor(sim, tmp_path / "store")
    report = await ing.run([docs])
    assert report.files_seen == 6
    assert (report.files_added, report.files_failed, report.files_skipped) == (3, 2, 1)
    failed = {Path(f.path).name: f.reason for f in report.failures}
    assert set(failed) == {"corrupt.pdf", "binary.txt"}
    assert "binary" in failed["binary.txt"]
    notes = {Path(w.path).name: w.reason for w in report.warnings}
    assert "cp1252" in notes["latin1.txt"] and "empty" in notes["empty.txt"]
    sources = {Path(r.metadata["source"]).name for r in await ing.store.get_async()}
    assert sources == {"good.md", "page.pdf", "latin1.txt"}


async def test_a_text_the_provider_rejects_fails_only_its_own_file(sim: Any, tmp_path: Path) -> None:
    for i in range(6):
        (tmp_path / f"f{i}.txt").write_text(f"File {i} is about the harbour ferry timetable number {i}.")
    (tmp_path / "f3.txt").write_text("File 3 contains FORBIDDEN words the model rejects.")
    sim.configure(reject_text="FORBIDDEN")
    report = await ingestor(sim, tmp_path / "store", batch_size=64).run(
        [tmp_path / f"f{i}.txt" for i in range(6)]
    )
    assert report.files_added == 5
    assert [(Path(f.path).name, f.error_type) for f in report.failures] == [("f3.txt", "BadRequestError")]


async def test_bad_credentials_stop_the_run_after_one_request(sim: Any, tmp_path: Path) -> None:
    write_corpus(tmp_path / "docs", 20)
    sim.configure(api_key="the-right-key")
    with pytest.raises(AuthenticationError):
        await ingestor(sim, tmp_path / "store", concurrency=1).run([tmp_path / "docs"])
    assert sim.stats()["embeddings"]["requests"] <= 2


async def test_prune_deletes_files_that_are_gone_and_respects_glob(sim: Any, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_corpus(docs, 4)
    (docs / "keep.md").write_text("# Notes\n\nMarkdown notes about the town museum.")
    sibling = tmp_path / "docs-archive"  # shares the "docs" prefix: must not be touched
    write_corpus(sibling, 1, seed=9)
    ing = ingestor(sim, tmp_path / "store")
    assert (await ing.run([docs, sibling])).files_added == 6
    (docs / "doc00001.txt").unlink()
    (docs / "doc00002.txt").unlink()
    no_prune = await ing.run([docs])
    assert no_prune.files_pruned == 0
    # With --glob '*.txt', only .txt files are candidates: keep.md stays although the walk skipped it.
    report = await ing.run([docs], prune=True, glob="*.txt")
    assert report.files_pruned == 2 and report.chunks_removed > 0
    names = {Path(r.metadata["origin"]).name for r in await ing.store.get_async()}
    assert names == {"doc00000.txt", "doc00003.txt", "keep.md"} | {"doc00000.txt"}  # + the sibling's file
    assert await ing.store.count_async({"origin": (sibling / "doc00000.txt").as_posix()}) > 0


async def test_documents_and_texts_from_python_are_idempotent(sim: Any, tmp_path: Path) -> None:
    rag = AgenticRAG(VectorStore(str(tmp_path / "store"), collection_name="t"), embedder(sim))
    pages = [
        Document("The museum opens at ten.", "guide", {"page": 1}),
        Document("The museum closes at six.", "guide", {"page": 2}),
    ]
    first = await rag.index_documents_async(pages)
    assert (first.files_added, first.chunks_added) == (1, 2)  # one source: one unit of ingestion
    assert (await rag.index_documents_async(pages)).files_skipped == 1
    texts = await rag.index_texts_async(["Ferries run hourly.", "Ferries run hourly.", "Buses run daily."])
    assert (texts.files_added, texts.chunks_added) == (2, 2)  # a text is named by its hash: once only
    named = await rag.index_texts_async(["Tide tables."], sources=["tides"], metadata=[{"lang": "en"}])
    assert named.files_added == 1
    assert (await rag.vector_store.get_async(filter={"source": "tides"}))[0].metadata["lang"] == "en"
    with pytest.raises(InvalidInputError):
        await rag.index_texts_async("not a list")  # type: ignore[arg-type]


async def test_urls_are_fetched_concurrently_and_indexed(sim: Any, tmp_path: Path) -> None:
    async def page(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        html = f"<html><head><title>{name}</title></head><body><h1>{name}</h1><p>The {name} page says hi.</p></body></html>"
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/{name}", page)
    async with serving(app) as address:
        urls = [f"http://{address}/{name}" for name in ("alpha", "beta", "gamma")]
        ing = ingestor(sim, tmp_path / "store")
        report = await ing.run([*urls, f"http://{address}/alpha"])
        assert report.files_added == 3 and report.ok
        stored = {r.metadata["source"]: r.text for r in await ing.store.get_async()}
        assert set(stored) == set(urls)
        assert "The beta page says hi." in stored[urls[1]]
        assert (await ing.run(urls)).files_skipped == 3


async def test_progress_snapshots_are_consistent_and_end_complete(sim: Any, tmp_path: Path) -> None:
    write_corpus(tmp_path / "docs", 40)
    snapshots: list[IngestProgress] = []
    report = await ingestor(sim, tmp_path / "store", batch_size=8).run(
        [tmp_path / "docs"], progress=snapshots.append
    )
    assert snapshots[-1].files_done == snapshots[-1].files_total == 40
    assert snapshots[-1].chunks_written == snapshots[-1].chunks_total == report.chunks_added
    for earlier, later in itertools.pairwise(snapshots):
        assert later.files_done >= earlier.files_done
        assert later.chunks_embedded >= earlier.chunks_embedded
        assert later.chunks_written <= later.chunks_total


async def test_chunks_in_flight_stay_within_the_budget(sim: Any, tmp_path: Path) -> None:
    write_corpus(tmp_path / "docs", 120, chars=800)
    sim.configure(embed_ms=10)
    peak = 0

    def watch(p: IngestProgress) -> None:
        nonlocal peak
        peak = max(peak, p.chunks_total - p.chunks_written)

    ing = ingestor(
        sim, tmp_path / "store", batch_size=4, concurrency=2, load_concurrency=2, max_chunks_in_flight=16
    )
    report = await ing.run([tmp_path / "docs"], progress=watch)
    assert report.ok and report.chunks_added > 100
    # Chunked but unwritten: the budget, plus the group of files each loader holds while it waits for budget
    # (files per group: at most the budget / (4 x loaders), here 2).
    per_file = math.ceil(report.chunks_added / 120) + 2
    assert 0 < peak <= 16 + 2 * 2 * per_file


async def test_cancelling_leaves_every_file_complete_or_absent(sim: Any, tmp_path: Path) -> None:
    corpus = tmp_path / "docs"
    write_corpus(corpus, 60)
    await unique_chunks(sim, corpus, tmp_path)  # the reference store: each file's full chunk count
    reference = VectorStore(str(tmp_path / "reference"), collection_name="t")
    per_origin: dict[str, int] = {}
    for row in await reference.get_async():
        per_origin[row.metadata["origin"]] = per_origin.get(row.metadata["origin"], 0) + 1
    sim.configure(embed_ms=30)
    sim.reset()
    ing = ingestor(sim, tmp_path / "store", batch_size=4, concurrency=2)
    some_written = asyncio.Event()

    def watch(p: IngestProgress) -> None:
        if p.chunks_written > 0:
            some_written.set()

    task = asyncio.create_task(ing.run([corpus], progress=watch))
    await some_written.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ing.report is not None and ing.report.interrupted
    counts: dict[str, int] = {}
    for row in await ing.store.get_async():
        counts[row.metadata["origin"]] = counts.get(row.metadata["origin"], 0) + 1
    assert 0 < len(counts) < 60
    assert all(counts[o] == per_origin[o] for o in counts)  # no half-written file


def test_kill_9_midway_then_rerun_embeds_only_the_missing_chunks(sim: Any, tmp_path: Path) -> None:
    corpus = tmp_path / "docs"
    write_corpus(corpus, 120)
    expected = asyncio.run(unique_chunks(sim, corpus, tmp_path))
    store_dir = tmp_path / "store"
    # Midway (some files written, half the chunks embedded, files left), the child says so and then blocks its
    # event loop on stdin, so it is killed in that state however slow or fast the machine is.
    child = textwrap.dedent(
        f"""
        import asyncio, sys
        from mini import EmbeddingModel, VectorStore
        from mini.ingest.pipeline import Ingestor
        def progress(p):
            if p.chunks_written and p.chunks_embedded >= {expected // 2} and p.files_done < p.files_total:
                print("midway", flush=True)
                sys.stdin.readline()
        store = VectorStore({str(store_dir)!r}, collection_name="t")
        model = EmbeddingModel("openai:sim-embed", base_url={sim.base_url!r}, api_key={KEY!r}, dimension=384)
        ingestor = Ingestor(store, model, batch_size=4, concurrency=2)
        asyncio.run(ingestor.run([{str(corpus)!r}], progress=progress))
        """
    )
    sim.configure(embed_ms=25)
    sim.reset()
    process = subprocess.Popen(
        [sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "midway\n", "the child finished before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
    store = VectorStore(str(store_dir), collection_name="t")
    written = store.count()
    assert 0 < written < expected
    sim.configure(embed_ms=0)
    sim.wait_for("embeddings", in_flight=0, timeout=30)  # the dead child's requests finish (and count) first
    sim.reset()
    report = asyncio.run(ingestor(sim, store_dir).run([corpus]))
    assert report.ok
    assert report.chunks_added == expected - written
    assert embedded(sim)[1] == expected - written  # only the chunks that were missing
    assert store.count() == expected  # and nothing duplicated


@pytest.mark.slow
async def test_local_model_ingestion_keeps_the_loop_responsive(tmp_path: Path, lag_probe: Any) -> None:
    write_corpus(tmp_path / "docs", 20)
    model = EmbeddingModel()  # the bundled local model: batches run in worker threads, one per core
    # Loading the model and tokenizer is measured elsewhere (one-time stalls of ~20 ms while Rust code holds
    # the GIL); the budget here is for ingestion itself.
    (tmp_path / "warm.txt").write_text("warm up")
    await Ingestor(VectorStore(str(tmp_path / "warm"), collection_name="t"), model).run(
        [tmp_path / "warm.txt"]
    )
    ing = Ingestor(VectorStore(str(tmp_path / "store"), collection_name="t"), model)
    async with lag_probe:
        report = await ing.run([tmp_path / "docs"])
    assert report.files_added == 20 and report.ok
    # Local chunks are sized by the model's own tokenizer, so none is cut off at its 256-token limit.
    tokenizer = model.embedder.chunk_tokenizer()  # type: ignore[attr-defined]
    texts = [r.text for r in await ing.store.get_async()]
    assert max(len(tokenizer.encode(t, add_special_tokens=False).ids) for t in texts) <= 250
    assert len(lag_probe.ticks) > 100, "the ticker barely ran: ingestion held the loop"
    assert lag_probe.own_max_ms < 50, lag_probe.summary()


@pytest.mark.parametrize("kind", ["milvus-lite", "qdrant-local"])
async def test_idempotent_reruns_edits_and_prune_on_the_other_backends(
    sim: Any, tmp_path: Path, kind: str
) -> None:
    uri = str(tmp_path / "m.db") if kind == "milvus-lite" else f"qdrant+path://{tmp_path / 'q'}"
    store = VectorStore(uri, collection_name="t")
    ing = Ingestor(store, embedder(sim))
    corpus = tmp_path / "docs"
    write_corpus(corpus, 12)
    first = await ing.run([corpus])
    rows = await store.count_async()
    assert (first.files_added, first.chunks_added) == (12, rows)
    assert (await ing.run([corpus])).chunks_embedded == 0
    target = corpus / "doc00004.txt"
    target.write_text(target.read_text() + "\n\nA new closing paragraph about purple zebras on the ferry.")
    (corpus / "doc00009.txt").unlink()
    sim.reset()
    edited = await ing.run([corpus], prune=True)
    assert (edited.files_updated, edited.files_pruned, edited.files_skipped) == (1, 1, 10)
    assert embedded(sim)[1] == edited.chunks_embedded >= 1
    assert not await store.get_async(filter={"origin": (corpus / "doc00009.txt").as_posix()})
    texts = [r.text for r in await store.get_async(filter={"origin": target.as_posix()})]
    assert any("purple zebras" in t for t in texts)
    await store.aclose()
