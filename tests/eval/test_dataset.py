"""Evaluation datasets: JSONL checks that name the line, the bundled sample set, and relevant-source matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from mini.errors import InvalidInputError
from mini.eval.dataset import EvalItem, as_items, judged_ranking, load_dataset, parse_jsonl, source_matches
from mini.eval.metrics import hit_at_k, mrr_at_k, recall_at_k
from mini.types import RetrievalResult
from tests.conftest import REPO, SAMPLE_CORPUS

SAMPLE_SET = REPO / "examples" / "eval" / "questions.jsonl"


def test_jsonl_rows_become_items_with_line_number_ids() -> None:
    lines = [
        '{"question": " When? ", "ground_truth": "Monday.", "relevant_sources": "a.md", "lang": "en"}',
        "",
        '{"id": "q2", "question": "Where?", "relevant_ids": ["c1", 7], "ground_truth": "  "}',
    ]
    first, second = parse_jsonl(lines, name="qs.jsonl")
    assert first == EvalItem("When?", "Monday.", (), ("a.md",), "1", {"lang": "en"})
    assert second.id == "q2" and second.relevant_ids == ("c1", "7") and second.ground_truth is None
    assert first.has_relevance and not EvalItem("x").has_relevance


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "qs.jsonl line 2: not valid JSON"),
        ('{"ground_truth": "x"}', "qs.jsonl line 2: 'question' is missing or empty"),
        ('{"question": "  "}', "'question' is missing or empty"),
        ('["a list"]', "line 2: expected a JSON object, got list"),
        ('{"question": "q", "ground_truth": 3}', "'ground_truth' must be a string"),
        ('{"question": "q", "relevant_ids": {"a": 1}}', "'relevant_ids' must be a list of strings"),
        ('{"id": "1", "question": "q"}', "id '1' is used twice"),
    ],
)
def test_a_bad_line_is_an_error_naming_it(line: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(")):
        parse_jsonl(['{"question": "first"}', line], name="qs.jsonl")


def test_unreadable_files_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no such file"):
        load_dataset(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(InvalidInputError, match="no questions"):
        load_dataset(tmp_path / "empty.jsonl")


def test_lists_of_strings_dicts_and_items_are_datasets() -> None:
    items = as_items(["Why?", {"question": "How?", "id": "h"}, EvalItem("What?")])
    assert [(i.id, i.question) for i in items] == [("1", "Why?"), ("h", "How?"), ("3", "What?")]
    with pytest.raises(InvalidInputError, match="no questions"):
        as_items([])


def test_the_bundled_sample_set_points_at_files_of_the_demo_corpus() -> None:
    items = load_dataset(SAMPLE_SET)
    assert 8 <= len(items) <= 12
    corpus = {p.name for p in SAMPLE_CORPUS.iterdir()}
    for item in items:
        assert item.ground_truth and item.relevant_sources, item.id
        for source in item.relevant_sources:
            assert source.partition("#")[0] in corpus, source


def test_relevant_sources_match_whole_path_components_and_rows() -> None:
    stored = "/home/me/examples/corpus/recycling_schedule.pdf"
    assert source_matches(stored, "recycling_schedule.pdf")
    assert source_matches(stored, "corpus/recycling_schedule.pdf")
    assert source_matches(stored, stored)
    assert not source_matches(stored, "schedule.pdf")  # a suffix that is not a whole file name
    row = "/data/faq.jsonl#faq-parking"
    assert source_matches(row, "faq.jsonl#faq-parking") and source_matches(row, "faq.jsonl")
    assert not source_matches(row, "faq.jsonl#faq-vote")
    assert not source_matches("", "a.md") and not source_matches(stored, " ")


def _chunk(id_: str, source: str) -> RetrievalResult:
    return RetrievalResult(id_, "text", 1.0, {"source": source})


def test_ranking_by_sources_counts_documents_at_their_best_chunk() -> None:
    item = EvalItem("q", relevant_sources=("a.md", "c.md"))
    contexts = [_chunk("1", "/x/b.md"), _chunk("2", "/x/a.md"), _chunk("3", "/x/a.md")]
    ranked, relevance = judged_ranking(item, contexts)
    assert ranked == ["other:/x/b.md", "wanted:a.md", "wanted:a.md"]
    assert relevance == {"wanted:a.md": 1, "wanted:c.md": 1}
    assert mrr_at_k(ranked, relevance, 5) == 0.5  # a.md first appears at rank 2
    assert recall_at_k(ranked, relevance, 5) == 0.5  # one of the two wanted documents
    assert hit_at_k(ranked, relevance, 1) == 0.0


def test_ranking_by_ids_when_given() -> None:
    item = EvalItem("q", relevant_ids=("3",), relevant_sources=("b.md",))
    contexts = [_chunk("1", "/x/b.md"), _chunk("3", "/x/a.md")]
    assert judged_ranking(item, contexts) == (["1", "3"], {"3": 1})
