"""The client-side BM25 term vectors (`mini.stores.sparse`) as pure functions: tokenizer, stemmer, hashing,
document and query weights."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from mini.stores.sparse import (
    AVG_DOC_TERMS,
    ENGLISH_STOP_WORDS,
    K1,
    B,
    TermVector,
    document_vector,
    query_vector,
    stem,
    term_index,
    tokenize,
)


def test_tokenize_lowercases_splits_on_non_alphanumerics_and_drops_stop_words() -> None:
    assert tokenize("The Zebra, and THE river!") == ["zebra", "river"]
    assert tokenize("e-mail snake_case x+y=2024") == ["e", "mail", "snake", "case", "x", "y", "2024"]
    assert tokenize("Zürich naïve café 東京") == ["zürich", "naïve", "café", "東京"]
    assert tokenize("the of and to") == []
    assert tokenize("") == []
    assert {"the", "a", "and", "of", "to", "is", "not"} <= ENGLISH_STOP_WORDS
    assert "zebra" not in ENGLISH_STOP_WORDS


@pytest.mark.parametrize(
    ("word", "stemmed"),
    [
        # Porter's own examples for step 1 (1980 paper).
        ("caresses", "caress"),
        ("ponies", "poni"),
        ("ties", "ti"),
        ("caress", "caress"),
        ("cats", "cat"),
        ("feed", "feed"),
        ("agreed", "agree"),
        ("plastered", "plaster"),
        ("bled", "bled"),
        ("motoring", "motor"),
        ("sing", "sing"),
        ("conflated", "conflate"),
        ("troubled", "trouble"),
        ("sized", "size"),
        ("hopping", "hop"),
        ("tanned", "tan"),
        ("falling", "fall"),
        ("hissing", "hiss"),
        ("fizzed", "fizz"),
        ("failing", "fail"),
        ("filing", "file"),
        ("happy", "happi"),
        ("sky", "sky"),
        # What keyword search needs from it.
        ("running", "run"),
        ("runs", "run"),
        ("run", "run"),
        ("connected", "connect"),
        ("connecting", "connect"),
    ],
)
def test_stem_is_porter_step_one(word: str, stemmed: str) -> None:
    assert stem(word) == stemmed


def test_stem_leaves_short_non_ascii_and_alphanumeric_words_alone() -> None:
    assert [stem(w) for w in ("is", "as", "naïves", "x31s", "2024s", "runner")] == [
        "is",
        "as",
        "naïves",
        "x31s",
        "2024s",
        "runner",  # no derivational suffixes: step 1 only
    ]


def test_inflections_share_their_terms() -> None:
    assert tokenize("Runs running run") == ["run", "run", "run"]
    assert query_vector("running") == query_vector("RUNS") == query_vector("run")


def test_term_index_is_the_first_four_bytes_of_blake2b_little_endian() -> None:
    digest = hashlib.blake2b(b"zebra", digest_size=4).digest()
    assert term_index("zebra") == int.from_bytes(digest, "little") == 2175618413
    assert 0 <= term_index("zürich") < 2**32


def test_term_index_does_not_depend_on_the_process() -> None:
    # Unlike hash(), which is salted per process: indices written by one process must be found by another.
    code = "from mini.stores.sparse import term_index; print(term_index('zebra'))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert outputs == {"2175618413"}


def test_document_vector_is_bm25_saturated_term_frequency_with_a_fixed_average_length() -> None:
    vector = document_vector("Zebra zebra river")
    assert list(vector.indices) == sorted([term_index("zebra"), term_index("river")])
    norm = K1 * (1 - B + B * 3 / AVG_DOC_TERMS)
    expected = {
        term_index("zebra"): 2 * (K1 + 1) / (2 + norm),
        term_index("river"): 1 * (K1 + 1) / (1 + norm),
    }
    assert dict(zip(vector.indices, vector.values, strict=True)) == pytest.approx(expected)
    # Saturation: ten repeats weigh less than twice two, and never more than k1 + 1.
    ten = document_vector("zebra " * 10).values[0]
    assert ten < 2 * document_vector("zebra zebra").values[0] and ten < K1 + 1
    # Length normalisation: the same term weighs less in a longer text.
    long = document_vector("zebra " + "filler " * 200)
    short = document_vector("zebra filler")
    zebra = term_index("zebra")
    assert (
        dict(zip(long.indices, long.values, strict=True))[zebra]
        < dict(zip(short.indices, short.values, strict=True))[zebra]
    )


def test_colliding_terms_become_one_entry() -> None:
    # Two terms with the same index (found by search): Qdrant refuses repeated indices in a vector.
    assert term_index("x31183") == term_index("x92274")
    vector = document_vector("x31183 x92274")
    assert len(vector.indices) == 1
    assert vector.values[0] == pytest.approx(document_vector("x31183 x31183").values[0])
    assert query_vector("x31183 x92274") == TermVector((term_index("x31183"),), (1.0,))


def test_query_vector_weighs_each_distinct_term_once() -> None:
    vector = query_vector("zebra Zebra zebras river the")
    assert vector == TermVector(tuple(sorted([term_index("zebra"), term_index("river")])), (1.0, 1.0))
    assert not query_vector("the of and")
    assert not document_vector("... --- !!!")
    assert document_vector("") == TermVector((), ())
