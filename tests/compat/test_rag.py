"""mini-rag 0.1.3's `mini.rag` spellings, each a thin path onto the new `AgenticRAG` (over the simulator)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mini import AgenticRAG, EmbeddingModel, LLMConfig, VectorStore
from mini.errors import DocumentError
from mini.ingest.report import IngestReport
from mini.reranker import BaseReranker, RerankResult
from tests.compat._fresh import fresh_warnings  # noqa: F401
from tests.query.conftest import SIM_KEY, make_rag

TEXT = "The education budget is 12 million. Railways receive 30 million for new lines.\n\nPackage 1 covers outpatient care."


@pytest.fixture
def doc(tmp_path: Path) -> Path:
    path = tmp_path / "budget.txt"
    path.write_text(TEXT)
    return path


def test_0_1_3_config_names_import_from_mini_rag() -> None:
    from mini.rag import (  # noqa: F401
        AgenticRAG,
        LLMConfig,
        ObservabilityConfig,
        RerankerConfig,
        RetrievalConfig,
    )

    config = LLMConfig(
        model="gpt-4o-mini", api_key=None, base_url=None, temperature=0.7, timeout=60.0, max_retries=3
    )
    assert config.temperature == 0.7
    retrieval = RetrievalConfig(top_k=10, rerank_top_k=3, use_query_rewriting=True, use_reranking=True)
    assert (retrieval.top_k, retrieval.rerank_top_k) == (10, 3)


def test_reranker_config_type_and_kwargs_warn_and_become_the_new_fields() -> None:
    from mini.rag import RerankerConfig

    with pytest.warns(DeprecationWarning) as caught:
        config = RerankerConfig(type="cohere", kwargs={"api_key": "k", "model": "rerank-english-v3.0"})
    assert (config.kind, config.api_key, config.model) == ("cohere", "k", "rerank-english-v3.0")
    messages = " ".join(str(w.message) for w in caught)
    assert "RerankerConfig(kind=...)" in messages and "own fields" in messages
    local = RerankerConfig(type="sentence-transformer", kwargs={"model_name": "/models/ce", "device": "cpu"})
    assert (local.kind, local.model_path, local.device) == ("cross-encoder", "/models/ce", "cpu")


def test_reranker_config_refuses_unknown_kwargs_naming_the_supported_ones() -> None:
    from mini.errors import InvalidInputError
    from mini.rag import RerankerConfig

    with pytest.warns(DeprecationWarning), pytest.raises(InvalidInputError, match="supported: api_key"):
        RerankerConfig(type="cohere", kwargs={"max_chunks_per_doc": 3})


def test_langfuse_keys_of_0_1_3_export_through_configure_langfuse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0.1.3 sent traces to Langfuse when given its keys; so does this, through the tracing module's one
    Langfuse exporter (its export itself is tested in tests/test_tracing.py)."""
    from mini import tracing
    from mini.observability import LangfuseConfig
    from mini.rag import ObservabilityConfig

    calls: list[dict[str, Any]] = []
    provider = type("Provider", (), {"force_flush": lambda self: None, "shutdown": lambda self: None})()
    monkeypatch.setattr(tracing, "configure_langfuse", lambda **kw: calls.append(kw) or provider)
    with pytest.warns(DeprecationWarning, match="configure_langfuse"):
        config = ObservabilityConfig(enabled=True, public_key="pk", secret_key="sk", host="https://h")
    assert config.enabled and config.host == "https://h" and "sk" not in repr(config)
    AgenticRAG(VectorStore(str(tmp_path / "store")), EmbeddingModel(), observability_config=config)
    assert calls == [{"public_key": "pk", "secret_key": "sk", "host": "https://h"}]
    AgenticRAG(
        VectorStore(str(tmp_path / "store")), EmbeddingModel(), observability_config=ObservabilityConfig()
    )
    assert len(calls) == 1  # the new API: the environment decides (tracing._langfuse_from_env)
    with pytest.warns(DeprecationWarning):
        legacy = LangfuseConfig(enabled=True, public_key="pk2", secret_key="sk2", host="https://h2")
    assert legacy.is_enabled() and calls[-1] == {
        "public_key": "pk2",
        "secret_key": "sk2",
        "host": "https://h2",
    }
    legacy.flush()
    assert not LangfuseConfig(enabled=False).is_enabled()


async def test_index_document_with_document_path_returns_the_chunk_count(
    sim: Any, tmp_path: Path, doc: Path
) -> None:
    rag = make_rag(sim, tmp_path / "store")
    with pytest.warns(DeprecationWarning, match="IngestReport"):
        count = await rag.index_document_async(document_path=str(doc), metadata={"category": "research"})
    assert isinstance(count, int) and count >= 1
    assert count == await rag.vector_store.count_async()
    hits = await rag.search_async("education budget", rewrite=False)
    assert hits[0].metadata["category"] == "research"
    # The new spelling is untouched: a report, no warning; where 0.1.3 code does arithmetic with what it
    # returned, the report counts as its chunks.
    report = await rag.index_document_async(doc)
    assert isinstance(report, IngestReport) and report.files_updated == 1  # its metadata went away
    assert int(report) == count and 0 + report == count and sum([report, report]) == 2 * count


def test_index_documents_with_document_paths_returns_the_total_and_raises_a_failure(
    sim: Any, tmp_path: Path, doc: Path
) -> None:
    other = tmp_path / "other.md"
    other.write_text("# Health\n\nHospitals get 5 million.")
    rag = make_rag(sim, tmp_path / "store")
    with pytest.warns(DeprecationWarning, match="IngestReport"):
        total = rag.index_documents(document_paths=[str(doc), str(other)], metadata={"year": 2024})
    assert total == rag.vector_store.count() >= 2
    assert {hit.metadata["year"] for hit in rag.search("hospitals", rewrite=False)} == {2024}
    # 0.1.3 raised for a file it could not read; its spelling still does.
    with pytest.raises(DocumentError, match=r"missing\.txt"):
        rag.index_documents(document_paths=[str(doc), str(tmp_path / "missing.txt")])
    rag.close()


def test_query_keywords_of_0_1_3(sim: Any, tmp_path: Path, doc: Path) -> None:
    rag = make_rag(sim, tmp_path / "store")
    rag.index_document(doc)
    with pytest.warns(DeprecationWarning, match=r"query\(question\)"):
        response = rag.query(
            query="What is the education budget?", top_k=10, rerank_top_k=1, return_sources=True
        )
    assert len(response.retrieved_chunks) == 1
    assert response.original_query == "What is the education budget?"
    with pytest.warns(DeprecationWarning, match="return_sources"):
        hidden = rag.query(query="What is the education budget?", return_sources=False)
    assert hidden.retrieved_chunks == [] and hidden.answer
    rag.close()


def test_results_have_rank_reranked_score_and_num_retrieved(sim: Any, tmp_path: Path, doc: Path) -> None:
    rag = make_rag(sim, tmp_path / "store")
    rag.index_document(doc)
    response = rag.query("What is the education budget?", rerank_top_k=2)
    assert [hit.rank for hit in response.retrieved_chunks] == list(
        range(1, len(response.retrieved_chunks) + 1)
    )
    first = response.retrieved_chunks[0]
    with pytest.warns(DeprecationWarning, match=r"RetrievalResult\.score"):
        assert first.reranked_score == first.score
    with pytest.warns(DeprecationWarning, match="num_candidates"):
        assert response.metadata["num_retrieved"] == response.metadata["num_candidates"]
    with pytest.raises(KeyError):
        response.metadata["no_such_key"]
    rag.close()


def test_get_stats_reports_0_1_3_keys(sim: Any, tmp_path: Path, doc: Path) -> None:
    rag = make_rag(sim, tmp_path / "store")
    rag.index_document(doc)
    stats = rag.get_stats()
    assert stats["total_chunks"] == rag.vector_store.count() >= 1
    assert {
        "vector_store",
        "embedding_model",
        "llm_model",
        "query_rewriting",
        "reranking",
        "top_k",
        "rerank_top_k",
    } <= set(stats)
    rag.close()


class Reverse(BaseReranker):
    """A user's own 0.1.3 reranker: last document first."""

    def rerank(self, query: str, documents: list[str], top_k: int | None = None) -> list[RerankResult]:
        order = list(reversed(range(len(documents))))[:top_k]
        return [RerankResult(documents[i], float(n), i) for n, i in enumerate(order)]

    def __repr__(self) -> str:
        return "Reverse()"


def test_custom_reranker_of_0_1_3_runs_in_the_pipeline(sim: Any, tmp_path: Path, doc: Path) -> None:
    from mini.rag import RerankerConfig

    with pytest.warns(DeprecationWarning, match=r"AgenticRAG\(reranker="):
        config = RerankerConfig(custom_reranker=Reverse())
    rag = AgenticRAG(
        VectorStore(str(tmp_path / "store"), collection_name="sim"),
        EmbeddingModel("openai:sim-embed", base_url=sim.base_url, api_key=SIM_KEY, dimension=384),
        llm_config=LLMConfig(model="sim-chat", base_url=sim.base_url, api_key=SIM_KEY),
        reranker_config=config,
    )
    rag.index_document(doc)
    candidates = rag.retrieve(["education budget"])
    ranked = rag.rerank("education budget", candidates, top_k=len(candidates))
    assert [hit.id for hit in ranked] == [hit.id for hit in reversed(candidates)]
    assert rag.pipeline.reranker_name() == "custom:Reverse"
    rag.close()


def test_the_new_api_never_warns(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import mini
        from mini import AgenticRAG, EmbeddingModel, RerankerConfig, ObservabilityConfig, VectorStore
        from mini.embeddings.base import Embedder
        rag = AgenticRAG(VectorStore({str(tmp_path / "store")!r}), EmbeddingModel("local:all-MiniLM-L6-v2"),
                         reranker_config=RerankerConfig(kind="none"), observability_config=ObservabilityConfig())
        report = rag.index_texts(["The education budget is 12 million."], sources=["a"])
        assert report.ok
        response = rag.query("education budget?", top_k=3, rerank_top_k=1)
        assert response.answer and response.retrieved_chunks[0].score == response.retrieved_chunks[0].score
        assert response.metadata["num_candidates"] >= 1
        assert isinstance(rag.get_stats(), dict)
        rag.close()
        s = VectorStore({str(tmp_path / "lance")!r}, collection_name="docs")
        s.upsert([[1.0, 0.0]], ["hello"], [{{"source": "a"}}])
        assert s.search([1.0, 0.0], top_k=1, filter={{"source": "a"}})[0].text == "hello"
        assert s.count() == 1; s.drop(); s.close()
        """
    )
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
