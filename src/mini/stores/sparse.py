"""Client-side BM25 term vectors for engines that store sparse vectors but do not analyse text (Qdrant).

Pipeline, the same for documents and queries: lowercase; split on anything that is not a letter or a digit;
drop English stop words (`ENGLISH_STOP_WORDS`); stem with step 1 of the Porter stemmer (plurals, -ed, -ing,
final -y: "runs", "running" -> "run"; no derivational suffixes, so "runner" stays apart); hash each term to a
uint32 index (first 4 bytes of blake2b, little-endian: stable across processes and Python versions, unlike
`hash()`).

Scoring split: Qdrant's IDF modifier multiplies each query term's weight by the term's IDF over the
collection at query time, and the score is the dot product. So a query term weighs 1.0 and a document term
carries the rest of BM25, its saturated and length-normalised frequency

    tf * (k1 + 1) / (tf + k1 * (1 - b + b * doc_len / AVG_DOC_TERMS))      k1 = 1.2, b = 0.75

which makes the score exactly BM25 except that the average document length is a constant, not the
collection's (the document is encoded before the collection's average is known, and re-encoding every row
when it moves is not an option). Plain tf would let a term repeated in a long chunk outweigh a rarer term;
the saturated form keeps BM25's behaviour, and a wrong average only shifts how strongly length counts.
`AVG_DOC_TERMS` is what our default chunks measure (see the constant).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter
from dataclasses import dataclass

# Lucene's English stop set: short enough not to swallow meaningful words, which suits BM25 (common words
# weigh little there anyway). Milvus's analyzer gets the same list (see `mini.stores.milvus`).
ENGLISH_STOP_WORDS: frozenset[str] = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "  # noqa: SIM905
    "these they this to was will with".split()
)
K1 = 1.2
B = 0.75
# Terms per chunk of the default chunker (up to 250 model tokens), counted by `tokenize`: the example corpus
# averaged 63 (21 chunks, at most 128) and this repository's docs 63 (77 chunks), so 64.
AVG_DOC_TERMS = 64.0

_WORD = re.compile(r"[^\W_]+")
_VOWELS = frozenset("aeiou")
_ASCII_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True, slots=True)
class TermVector:
    """A sparse vector: distinct uint32 indices in ascending order, with their weights."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    def __bool__(self) -> bool:
        return bool(self.indices)


def term_index(term: str) -> int:
    """The stable uint32 index of a term."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "little")


def tokenize(text: str) -> list[str]:
    """The terms of a text, in order, repeats kept: lowercased, stop words dropped, stemmed."""
    return [stem(word) for word in _words(text)]


def document_vector(text: str) -> TermVector:
    """The BM25 document side of a text (see the module docstring); empty for a text without terms."""
    terms = [_word_index(word) for word in _words(text)]
    if not terms:
        return TermVector((), ())
    # Counted by index, not by term: two terms sharing a hash must become one entry (Qdrant refuses
    # repeated indices), and then they count as one term, as they do at query time.
    counts = Counter(terms)
    norm = K1 * (1.0 - B + B * len(terms) / AVG_DOC_TERMS)
    indices = tuple(sorted(counts))
    return TermVector(indices, tuple(counts[i] * (K1 + 1.0) / (counts[i] + norm) for i in indices))


def query_vector(text: str) -> TermVector:
    """The query side: each distinct term once, weight 1.0 (the engine multiplies in its IDF)."""
    indices = tuple(sorted({_word_index(word) for word in _words(text)}))
    return TermVector(indices, (1.0,) * len(indices))


def _words(text: str) -> list[str]:
    return [word for word in _WORD.findall(text.lower()) if word not in ENGLISH_STOP_WORDS]


@functools.lru_cache(maxsize=65_536)
def _word_index(word: str) -> int:
    # Cached (~10 MB when full): a corpus repeats its vocabulary, and stemming plus hashing cost ~5x the
    # lookup (338 vs 64 us per 1,000 characters of text, cold vs warm).
    return term_index(stem(word))


# --- Porter stemmer, step 1 (M.F. Porter, "An algorithm for suffix stripping", 1980) ----------------------


def stem(word: str) -> str:
    """Porter's step 1 for lowercase ASCII words longer than two letters; other words are returned as is."""
    if len(word) <= 2 or not _ASCII_WORD.fullmatch(word):
        return word
    # 1a: plurals.
    if word.endswith("sses") or word.endswith("ies"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    # 1b: -eed, -ed, -ing.
    if word.endswith("eed"):
        if _measure(word[:-3]) > 0:
            word = word[:-1]
    else:
        for suffix in ("ed", "ing"):
            base = word[: -len(suffix)]
            if word.endswith(suffix) and _has_vowel(base):
                word = _tidy(base)
                break
    # 1c: a final y after a vowel-bearing stem becomes i ("happy" and "happiness" share "happi").
    if word.endswith("y") and _has_vowel(word[:-1]):
        word = word[:-1] + "i"
    return word


def _tidy(base: str) -> str:
    """Porter's repairs after removing -ed/-ing: "hopp" -> "hop", "hop" -> "hope", "conflat" -> "conflate"."""
    if base.endswith(("at", "bl", "iz")):
        return base + "e"
    if len(base) >= 2 and base[-1] == base[-2] and _consonant(base, len(base) - 1) and base[-1] not in "lsz":
        return base[:-1]
    if _measure(base) == 1 and _cvc(base):
        return base + "e"
    return base


def _consonant(word: str, i: int) -> bool:
    """Porter's consonant: not a vowel, and "y" only after a vowel (or first)."""
    ch = word[i]
    if ch in _VOWELS:
        return False
    if ch == "y":
        return i == 0 or not _consonant(word, i - 1)
    return True


def _measure(stem_: str) -> int:
    """m in [C](VC)^m[V]: how many vowel-consonant sequences the stem has."""
    m = 0
    previous_vowel = False
    for i in range(len(stem_)):
        vowel = not _consonant(stem_, i)
        if previous_vowel and not vowel:
            m += 1
        previous_vowel = vowel
    return m


def _has_vowel(stem_: str) -> bool:
    return any(not _consonant(stem_, i) for i in range(len(stem_)))


def _cvc(stem_: str) -> bool:
    """Ends consonant-vowel-consonant, the last not w, x or y ("hop", not "snow")."""
    n = len(stem_)
    return (
        n >= 3
        and _consonant(stem_, n - 3)
        and not _consonant(stem_, n - 2)
        and _consonant(stem_, n - 1)
        and stem_[-1] not in "wxy"
    )
