"""`mini eval beir` on a small BEIR-format dataset written here: loading, ingesting once, scoring each mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mini import AgenticRAG, EmbeddingModel, VectorStore
from mini.cli.main import app
from mini.errors import InvalidInputError
from mini.eval.beir import documents_of, evaluate_mode, ingest_beir, load_beir
from mini.types import RetrievalResult

DOCS = {
    "d1": (
        "Aspirin and heart attacks",
        "Daily low-dose aspirin reduces the risk of a first myocardial infarction.",
    ),
    "d2": ("Vitamin D", "Vitamin D supplements do not prevent bone fractures in older adults."),
    "d3": ("Sleep", "Adolescents who sleep less than seven hours perform worse in school."),
    "d4": ("Coffee", "Moderate coffee drinking is associated with lower mortality."),
    "d5": ("Gene XJ9", "The XJ9 gene regulates insulin secretion in pancreatic beta cells."),
}
QUERIES = {
    "q1": "Aspirin lowers the risk of heart attack.",
    "q2": "XJ9 controls insulin release.",
    "q3": "Short sleep harms school performance in teenagers.",
    "q9": "An unjudged query is ignored.",
}
QRELS = [("q1", "d1", 1), ("q2", "d5", 1), ("q3", "d3", 2)]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "tiny"
    (root / "qrels").mkdir(parents=True)
    lines = [json.dumps({"_id": i, "title": t, "text": x}) for i, (t, x) in DOCS.items()]
    (root / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    (root / "queries.jsonl").write_text(
        "\n".join(json.dumps({"_id": q, "text": t}) for q, t in QUERIES.items())
    )
    rows = "\n".join(f"{q}\t{d}\t{s}" for q, d, s in QRELS)
    (root / "qrels" / "test.tsv").write_text(f"query-id\tcorpus-id\tscore\n{rows}\n")
    return root


def test_load_beir_reads_titles_judged_queries_and_qrels(dataset: Path) -> None:
    data = load_beir(dataset)
    assert data.name == "tiny" and len(data.corpus) == 5
    assert data.corpus[0].text.startswith("Aspirin and heart attacks\n\n") and data.corpus[0].metadata == {
        "doc_id": "d1"
    }
    assert set(data.queries) == {"q1", "q2", "q3"} and data.qrels["q3"] == {"d3": 2}
    with pytest.raises(InvalidInputError, match="not a BEIR dataset"):
        load_beir(dataset, split="dev")


def test_documents_rank_at_their_best_chunk() -> None:
    chunks = [RetrievalResult(str(i), "", 1.0, {"doc_id": d}) for i, d in enumerate(["b", "a", "b", "c"])]
    assert documents_of(chunks) == ["b", "a", "c"]


async def test_every_mode_finds_the_judged_documents_and_ingestion_happens_once(
    dataset: Path, tmp_path: Path
) -> None:
    rag = AgenticRAG(VectorStore(str(tmp_path / "store"), collection_name="tiny"), EmbeddingModel())
    data = load_beir(dataset)
    first = await ingest_beir(rag, data)
    assert first.files_added == 5
    again = await ingest_beir(rag, data)
    assert again.files_skipped == 5 and again.chunks_added == 0
    for mode in ("dense", "keyword", "hybrid"):
        result = await evaluate_mode(rag, data, mode, concurrency=2)
        assert result.queries == 3 and not result.failures
        assert result.metrics["mrr@10"] == pytest.approx(1.0), mode  # each judged doc ranks first
        assert result.metrics["ndcg@10"] == pytest.approx(1.0) and result.metrics["recall@100"] == 1.0
    await rag.aclose()


def test_the_cli_prints_json_with_every_mode(dataset: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["eval", "beir", str(dataset), "--uri", str(tmp_path / "cli_store"), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [r["mode"] for r in report["results"]] == ["dense", "keyword", "hybrid"]
    assert report["ingest"]["added"] == 5 and report["settings"]["rrf_k"] == 10
    assert all(r["queries_scored"] == 3 and r["metrics"]["ndcg@10"] > 0.9 for r in report["results"])
    bad = CliRunner().invoke(app, ["eval", "beir", str(dataset), "--mode", "sparse"])
    assert bad.exit_code == 2 and "unknown mode" in bad.output
