"""Pure query helpers: prompts, rewrite parsing, RRF fusion, citation resolution (whole and streamed)."""

from __future__ import annotations

from mini.query import prompts
from mini.query.citations import CitationStream, build_citations, cited_numbers
from mini.query.fusion import rrf
from mini.types import RetrievalResult


def hit(id_: str, score: float = 0.5, source: str = "") -> RetrievalResult:
    return RetrievalResult(
        id=id_, text=f"text of {id_}", score=score, metadata={"source": source or f"{id_}.md"}
    )


def test_context_numbers_chunks_in_order_with_sources() -> None:
    context = prompts.format_context([hit("a"), hit("b")])
    assert context.startswith("[1] (source: a.md) text of a")
    assert "\n\n[2] (source: b.md) text of b" in context


def test_answer_prompt_carries_sources_and_question() -> None:
    messages = prompts.answer_messages("  Why?  ", "[1] x")
    assert messages[0]["role"] == "system" and "[1]" in messages[0]["content"]
    assert messages[-1]["content"] == "Sources:\n[1] x\n\nQuestion: Why?"


def test_rewrites_are_cleaned_deduplicated_and_capped() -> None:
    text = '1. budget of the library\n- Budget of the library\n\n"library funding 2025"\nWhat is the budget?\nextra one'
    assert prompts.parse_rewrites(text, original="What is the budget?", n=2) == [
        "budget of the library",
        "library funding 2025",
    ]


def test_rrf_fuses_by_rank_and_deduplicates() -> None:
    fused = rrf([[hit("a", 0.9), hit("b", 0.8)], [hit("b", 0.1), hit("c", 0.05)]], k=60)
    assert [h.id for h in fused] == ["b", "a", "c"]
    assert abs(fused[0].score - (1 / 62 + 1 / 61)) < 1e-12
    assert abs(fused[1].score - 1 / 61) < 1e-12


def test_rrf_weights_shift_the_order() -> None:
    fused = rrf([[hit("a")], [hit("b")]], weights=[1.0, 2.0])
    assert [h.id for h in fused] == ["b", "a"]


def test_cited_numbers_handles_lists_and_repeats() -> None:
    assert cited_numbers("x [2] y [1, 3] z [2][4]") == [2, 1, 3, 4]
    assert cited_numbers("no markers [a] [ ]") == []


def test_citations_drop_numbers_outside_the_sources() -> None:
    chunks = [hit("a"), hit("b")]
    cites = build_citations("fact [2] and [7]", chunks)
    assert [(c.number, c.chunk_id, c.source) for c in cites] == [(2, "b", "b.md")]


def test_streamed_markers_resolve_once_even_when_split_across_tokens() -> None:
    stream = CitationStream([hit("a"), hit("b"), hit("c")])
    seen = []
    for token in ["The budget", " is 5 [", "1", "] and [2", ", 3]", " again [1]", " [9]."]:
        seen.extend(c.number for c in stream.feed(token))
    assert seen == [1, 2, 3]
