"""The whole pipeline offline: local embeddings, embedded LanceDB on disk, extractive answers with citations."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mini import AgenticRAG, Document, EmbeddingModel, MiniError, RetrievalConfig, VectorStore
from mini.errors import DocumentError, EmptyQuestionError, InvalidInputError
from mini.stores.base import VectorStoreBackend
from tests.conftest import SAMPLE_CORPUS


@pytest.fixture(scope="module")
def corpus_rag(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgenticRAG]:
    # Built once with the sync facade (portal loop); each test then uses it from its own loop, which is
    # exactly the cross-loop use the facade promises.
    store_dir = tmp_path_factory.mktemp("offline_store")
    rag = AgenticRAG(VectorStore(str(store_dir), collection_name="corpus"), EmbeddingModel())
    report = rag.index_documents([SAMPLE_CORPUS])
    assert report.ok, report.failures
    yield rag
    rag.close()


@pytest.mark.parametrize(
    ("question", "expected", "source"),
    [
        ("How much is the 2025 library budget?", "$1.2 million", "council_budget_2025.md"),
        (
            "When is glass collected for recycling?",
            "first Wednesday of every month",
            "recycling_schedule.pdf",
        ),
    ],
)
async def test_offline_answer_quotes_the_right_sentence_with_a_citation(
    corpus_rag: AgenticRAG, question: str, expected: str, source: str
) -> None:
    response = await corpus_rag.query_async(question)
    assert expected in response.answer
    assert response.metadata["answer_type"] == "extractive"
    assert response.metadata["rewrite"] == "skipped: no LLM configured"
    assert response.rewritten_queries == [question]
    first = response.citations[0]
    assert first.source.endswith(source)
    assert f"[{first.number}]" in response.answer
    assert response.retrieved_chunks[first.number - 1].id == first.chunk_id
    assert set(response.metadata["timings_ms"]) == {
        "rewrite",
        "embed",
        "search",
        "rerank",
        "generate",
        "total",
    }
    assert response.context_used.startswith("[1] (source: ")


async def test_stream_yields_sources_then_tokens_then_done(corpus_rag: AgenticRAG) -> None:
    events = [e async for e in corpus_rag.stream_async("When is glass collected for recycling?")]
    kinds = [e.type for e in events]
    assert kinds[0] == "sources" and kinds[-1] == "done"
    assert set(kinds[1:-1]) == {"token", "citation"}
    done = events[-1].data
    assert "".join(e.data for e in events if e.type == "token") == done["answer"]
    streamed = [e.data["number"] for e in events if e.type == "citation"]
    assert streamed == [c["number"] for c in done["citations"]]
    assert events[0].data[streamed[0] - 1]["source"].endswith("recycling_schedule.pdf")


async def test_retrieve_searches_every_query_and_fuses_the_rankings(corpus_rag: AgenticRAG) -> None:
    single = await corpus_rag.retrieve_async(["library budget"], top_k=3)
    fused = await corpus_rag.retrieve_async(["library budget", "glass recycling days"], top_k=6)
    assert len(single) == 3
    sources = {hit.source.rsplit("/", 1)[-1] for hit in fused}
    assert {"council_budget_2025.md", "recycling_schedule.pdf"} <= sources
    assert len({hit.id for hit in fused}) == len(fused)


async def test_filters_restrict_retrieval_to_matching_sources(corpus_rag: AgenticRAG) -> None:
    pdf = str(SAMPLE_CORPUS / "recycling_schedule.pdf")
    hits = await corpus_rag.retrieve_async("library budget", filter={"source": pdf})
    assert hits and all(hit.source == pdf for hit in hits)


class _Untouchable:
    """A backend/embedder that fails the test if anything reaches it."""

    supports_hybrid = False
    name = "untouchable"
    dimension = 4

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"I/O happened: {name}")


@pytest.mark.parametrize("question", ["", "   ", "\n\t"])
async def test_empty_questions_raise_before_any_io(question: str) -> None:
    rag = AgenticRAG(
        VectorStore(backend=_Untouchable()),  # type: ignore[arg-type]
        EmbeddingModel(embedder=_Untouchable()),  # type: ignore[arg-type]
    )
    for call in (
        rag.query_async(question),
        rag.rewrite_query_async(question),
        rag.generate_answer_async(question, []),
    ):
        with pytest.raises(EmptyQuestionError) as info:
            await call
        assert isinstance(info.value, ValueError) and isinstance(info.value, MiniError)
    with pytest.raises(EmptyQuestionError):
        rag.stream_async(question)
    with pytest.raises(EmptyQuestionError):
        rag.query(question)


async def test_empty_store_answers_that_nothing_was_found(tmp_path: Path) -> None:
    rag = AgenticRAG(VectorStore(str(tmp_path), collection_name="empty"), EmbeddingModel())
    response = await rag.query_async("What is the budget?")
    assert response.metadata["answer_type"] == "no_context"
    assert response.citations == [] and response.retrieved_chunks == []
    assert "could not find" in response.answer


async def test_reingesting_is_idempotent_and_a_changed_file_replaces_its_chunks(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLE_CORPUS, docs)
    store = VectorStore(str(tmp_path / "store"), collection_name="t")
    rag = AgenticRAG(store, EmbeddingModel())
    first = await rag.index_documents_async([docs])
    total = await store.count_async()
    assert first.files_added == 8 and first.chunks_added == total > 0

    again = await rag.index_documents_async([docs])
    assert (again.files_skipped, again.chunks_added, again.chunks_removed) == (8, 0, 0)
    assert await store.count_async() == total

    notes = docs / "council_meeting_notes.txt"
    notes.write_text("The council voted to paint the lighthouse bright purple in 2026.\n")
    source = str(notes.resolve())
    before = await store.count_async({"source": source})
    changed = await rag.index_documents_async([docs])
    assert (changed.files_updated, changed.files_skipped) == (1, 7)
    assert changed.chunks_added == 1 and changed.chunks_removed == before
    assert await store.count_async({"source": source}) == 1
    assert await store.count_async() == total - before + 1
    response = await rag.query_async("What colour will the lighthouse be painted?")
    assert "purple" in response.answer


async def test_ingest_reports_partial_failures_and_indexes_the_rest(tmp_path: Path) -> None:
    (tmp_path / "good.md").write_text("# Ferry\n\nThe ferry to Gull Island leaves every hour from pier 3.\n")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{not json\n')
    rag = AgenticRAG(VectorStore(str(tmp_path / "store"), collection_name="t"), EmbeddingModel())
    report = await rag.index_documents_async([tmp_path, tmp_path / "missing.txt"])
    assert report.files_added == 1
    assert report.files_failed == 3
    failed = {Path(f.path).name: f for f in report.failures}
    assert set(failed) == {"broken.pdf", "bad.jsonl", "missing.txt"}
    assert "line 2" in failed["bad.jsonl"].reason
    assert (await rag.query_async("When does the ferry leave?")).citations


async def test_documents_can_be_indexed_directly(tmp_path: Path) -> None:
    rag = AgenticRAG(VectorStore(str(tmp_path), collection_name="t"), EmbeddingModel())
    report = await rag.index_document_async(
        Document("Otters sleep holding hands so they do not drift.", "otters")
    )
    assert report.files_added == 1 and report.chunks_added == 1
    response = await rag.query_async("Why do otters hold hands?")
    assert response.citations[0].source == "otters"


async def test_metadata_given_at_indexing_is_on_every_chunk_and_a_change_reindexes(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    for name in ("a.md", "b.md"):
        (tmp_path / "docs" / name).write_text(f"# {name}\n\nThe ferry leaves at nine from pier {name[0]}.")
    rag = AgenticRAG(VectorStore(str(tmp_path / "store"), collection_name="t"), EmbeddingModel())
    first = await rag.index_documents_async([tmp_path / "docs"], metadata={"team": "ops", "year": 2024})
    assert first.files_added == 2
    hits = await rag.search_async("ferry", filter={"team": "ops", "year": 2024}, rewrite=False)
    assert {hit.source for hit in hits} == {str(tmp_path / "docs" / n) for n in ("a.md", "b.md")}
    assert (
        await rag.index_documents_async([tmp_path / "docs"], metadata={"team": "ops", "year": 2024})
    ).files_skipped == 2
    moved = await rag.index_document_async(tmp_path / "docs" / "a.md", metadata={"team": "sales"})
    assert moved.files_updated == 1
    assert [
        hit.source for hit in await rag.search_async("ferry", filter={"team": "sales"}, rewrite=False)
    ] == [str(tmp_path / "docs" / "a.md")]
    with pytest.raises(InvalidInputError, match="JSON"):
        await rag.index_documents_async([tmp_path / "docs"], metadata={"when": object()})


async def test_index_document_raises_when_its_one_item_failed(tmp_path: Path) -> None:
    """A batch reports per-item failures; a call that asked for one thing raises when it failed."""
    rag = AgenticRAG(VectorStore(str(tmp_path / "store"), collection_name="t"), EmbeddingModel())
    with pytest.raises(DocumentError, match=r"missing\.txt"):
        await rag.index_document_async(tmp_path / "missing.txt")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    with pytest.raises(DocumentError, match=r"broken\.pdf"):
        await rag.index_document_async(tmp_path / "broken.pdf")
    report = await rag.index_documents_async([tmp_path / "missing.txt"])
    assert report.files_failed == 1  # the batch form reports it


async def test_rerank_disabled_keeps_retrieval_order_and_cuts_to_rerank_top_k(corpus_rag: AgenticRAG) -> None:
    rag = AgenticRAG(
        corpus_rag.vector_store,
        corpus_rag.embedding_model,
        retrieval_config=RetrievalConfig(top_k=8, rerank_top_k=3, use_reranking=False),
    )
    response = await rag.query_async("library opening hours")
    assert len(response.retrieved_chunks) == 3
    assert response.metadata["num_candidates"] == 8
    assert response.metadata["reranker"] == "disabled"


def test_backend_protocol_is_satisfied_by_lancedb(tmp_path: Path) -> None:
    store = VectorStore(str(tmp_path), collection_name="t")
    assert isinstance(store.backend, VectorStoreBackend)
