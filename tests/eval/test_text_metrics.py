"""Offline answer metrics against values computed by hand: token F1 (SQuAD), ROUGE-L, citation coverage, cosine."""

from __future__ import annotations

import math

import pytest

from mini.eval.text_metrics import (
    Unscorable,
    citation_coverage,
    cosine,
    lcs_length,
    normalize_answer,
    rouge_l,
    split_sentences,
    strip_citations,
    token_f1,
)


def test_citation_markers_are_not_words() -> None:
    assert strip_citations("Glass is collected monthly [1]. Jars too [2, 3].") == (
        "Glass is collected monthly. Jars too."
    )
    assert normalize_answer("The budget is $1.2 Million [1].") == "budget is 12 million"


def test_token_f1_follows_squad() -> None:
    assert token_f1("The cat sat on the mat [1].", "A cat sat on a mat") == 1.0  # articles, case, marker
    # pred: glass is collected on wednesdays (5); gold: glass bottles are collected on first wednesday (7);
    # common: glass, collected, on = 3 -> P 3/5, R 3/7, F1 = (18/35) / (36/35) = 0.5
    assert token_f1(
        "Glass is collected on Wednesdays", "Glass bottles are collected on the first Wednesday"
    ) == (pytest.approx(0.5))
    # bag of tokens: x x y vs x y y z -> common {x: 1, y: 1} = 2; P 2/3, R 2/4 -> F1 4/7
    assert token_f1("x x y", "x y y z") == pytest.approx(4 / 7)
    assert token_f1("nothing shared", "different words") == 0.0


def test_token_f1_empty_sides_follow_squad_v2() -> None:
    assert token_f1("", "") == 1.0
    assert token_f1("the", "an answer") == 0.0  # "the" normalises to nothing
    assert token_f1("an answer", "") == 0.0


def test_lcs_length() -> None:
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4
    assert lcs_length([], ["a"]) == 0


def test_rouge_l_is_the_lcs_f_measure() -> None:
    # the cat sat on the mat / the cat is on the mat: LCS = the cat on the mat (5); P = R = 5/6
    assert rouge_l("The cat sat on the mat.", "the cat is on the mat") == pytest.approx(5 / 6)
    # a b c d / b d e: LCS = b d (2); P 2/4, R 2/3 -> F 4/7
    assert rouge_l("a b c d", "b d e") == pytest.approx(4 / 7)
    assert rouge_l("d c b a", "a b c d") == pytest.approx(0.25)  # order matters, unlike token F1
    assert rouge_l("cat [1]", "cat") == 1.0
    assert rouge_l("", "cat") == 0.0 and rouge_l("dog", "cat") == 0.0


def test_sentences_keep_abbreviations_and_take_trailing_markers_back() -> None:
    assert split_sentences("Glass is collected monthly [1]. Rinse jars. [2] They go in the crate.") == [
        "Glass is collected monthly [1].",
        "Rinse jars. [2]",
        "They go in the crate.",
    ]
    assert split_sentences("Open from 9 a.m. to 5 p.m. on Saturday [1]") == [
        "Open from 9 a.m. to 5 p.m. on Saturday [1]"
    ]
    assert split_sentences("- first item [1]\n\n- second item") == ["- first item [1]", "- second item"]
    assert split_sentences("[1]") == [] and split_sentences("  ") == []


def test_citation_coverage_counts_sentences_with_a_valid_citation() -> None:
    # three sentences: [1] valid, none, [3] out of range for 2 contexts -> 1/3
    assert citation_coverage("A is true [1]. B is true. C is true [3].", 2) == pytest.approx(1 / 3)
    assert citation_coverage("A is true [1, 2]. B is true [2]", 2) == 1.0
    assert citation_coverage("A is true. [1] B is true.", 2) == 0.5  # the marker after the stop counts for A
    assert citation_coverage("A is true [1].", 0) == 0.0  # nothing retrieved: no citation can be valid
    with pytest.raises(Unscorable, match="no sentences"):
        citation_coverage("", 3)


def test_cosine() -> None:
    assert cosine([1, 0], [1, 1]) == pytest.approx(1 / math.sqrt(2))
    assert cosine([1, 2], [-1, -2]) == pytest.approx(-1.0)
    with pytest.raises(Unscorable):
        cosine([0, 0], [1, 0])
