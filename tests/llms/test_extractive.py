"""The offline extractive answerer: sentence splitting, scoring, citations."""

from __future__ import annotations

from mini.llms.extractive import (
    LOW_CONFIDENCE_PREFIX,
    NO_CONTEXT_ANSWER,
    Candidate,
    ExtractiveGenerator,
    compose,
    lexical_scores,
    split_sentences,
    terms,
)
from mini.types import RetrievalResult


def chunk(id_: str, text: str) -> RetrievalResult:
    return RetrievalResult(id=id_, text=text, score=0.5, metadata={"source": f"{id_}.md"})


def test_sentences_lose_markdown_markup_and_fragments() -> None:
    text = "# Budget 2025\n\n- The library receives $1.2 million. Parks get less!\n| a | b |\n|---|---|\nOk."
    sentences = split_sentences(text)
    assert "The library receives $1.2 million." in sentences
    assert "Parks get less!" in sentences
    assert all(not s.startswith(("#", "-", "|")) for s in sentences)
    assert "Ok." not in sentences  # too short to be an answer
    assert split_sentences("How do I get a permit? Permits cost $60 per year.") == [
        "Permits cost $60 per year."
    ]


def test_terms_drop_stopwords_and_stem_plurals() -> None:
    assert terms("What are the opening hours of the libraries?") == ["open", "hour", "librar"]


def test_lexical_scores_prefer_sentences_with_rare_question_terms() -> None:
    scores = lexical_scores(
        "library budget", ["The library budget is 5.", "The library is open.", "Parks are green."]
    )
    assert scores[0] == 1.0
    assert scores[0] > scores[1] > scores[2] == 0.0


def test_compose_puts_the_marker_before_the_final_punctuation() -> None:
    answer = compose([Candidate(2, 0, "Glass is collected on Tuesdays."), Candidate(1, 3, "Bring your ID")])
    assert answer == "Glass is collected on Tuesdays [2]. Bring your ID [1]"
    assert compose([Candidate(1, 0, "Open until 5 p.m.")]) == "Open until 5 p.m. [1]"


async def test_answer_cites_the_chunk_holding_the_best_sentence() -> None:
    chunks = [
        chunk("a", "The council met in March. Roads were discussed at length."),
        chunk("b", "Glass is collected every second Tuesday. Paper goes out on Fridays."),
    ]
    answer = await ExtractiveGenerator(max_sentences=1).answer("When is glass collected?", chunks)
    assert answer == "Glass is collected every second Tuesday [2]."


async def test_no_chunks_and_no_overlap_say_so_honestly() -> None:
    assert await ExtractiveGenerator().answer("anything", []) == NO_CONTEXT_ANSWER
    answer = await ExtractiveGenerator().answer(
        "zebra migration", [chunk("a", "The council met in March today.")]
    )
    assert answer.startswith(LOW_CONFIDENCE_PREFIX)
    assert answer.endswith("[1].")
