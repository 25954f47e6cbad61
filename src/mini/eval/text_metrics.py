"""Offline answer metrics: pure functions comparing an answer with a ground truth or with its own citations.

- `token_f1`: SQuAD's token F1 (the official v2.0 script: lowercase, drop punctuation and the articles a/an/the,
  split on whitespace; bag-of-tokens overlap; both empty -> 1.0, one empty -> 0.0).
- `rouge_l`: ROUGE-L F-measure (beta 1) of the longest common token subsequence, as rouge-score computes it
  without stemming, except that tokens are runs of letters and digits in any script (rouge-score keeps a-z0-9).
  Either side empty -> 0.0.
- `citation_coverage`: the share of the answer's sentences that carry at least one valid `[n]` citation
  (1 <= n <= number of contexts); see `split_sentences` for what a sentence is.
- `cosine`: the cosine of two vectors (semantic similarity of answer and ground truth embeddings).

Citation markers (`[1]`, `[2, 3]`) are removed before comparing words: they are references, not words of the
answer. `Unscorable` is raised where a metric has no defined value; the runner records it as a failed score.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np

from mini.query.citations import cited_numbers

_MARKER = r"\[\d{1,3}(?:\s*,\s*\d{1,3})*\]"
_MARKERS = re.compile(r"\s*" + _MARKER)
_LEADING_MARKERS = re.compile(r"^((?:" + _MARKER + r"\s*)+)(.*)$", re.DOTALL)
# A sentence ends at . ! or ? followed by whitespace and then a capital, a digit, an opening quote or
# parenthesis, or a citation marker ("... month. [1]" - the marker is moved back to its sentence below).
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=\[|[\"“'(]?[A-Z0-9])")
_WORDISH = re.compile(r"\w")
_ROUGE_TOKEN = re.compile(r"[^\W_]+")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


class Unscorable(ValueError):
    """A metric has no defined value for this input (RAGAS returns NaN); the message says why."""


def strip_citations(text: str) -> str:
    """`text` without `[n]` markers (and the space before each)."""
    return _MARKERS.sub("", text).strip()


def split_sentences(text: str) -> list[str]:
    """Sentences of an answer or ground truth, citation markers kept with the sentence they close.

    Every line is split at ., ! or ? followed by whitespace and a capital letter, a digit, an opening quote or
    parenthesis, or a `[n]` marker, so "9 a.m. to 5 p.m." stays whole (a known limit: "Dr. Smith" splits).
    Markers opening a piece ("... month. [1] Rinse ...") are moved back to the end of the previous sentence.
    Pieces without a letter or digit outside markers (bullets, stray markers) are not sentences.
    """
    sentences: list[str] = []
    for line in text.splitlines():
        for piece in _SENTENCE_BREAK.split(line.strip()):
            leading = _LEADING_MARKERS.match(piece)
            if leading and sentences:
                sentences[-1] = f"{sentences[-1]} {leading.group(1).strip()}"
                piece = leading.group(2)
            piece = piece.strip()
            if piece and _WORDISH.search(strip_citations(piece)):
                sentences.append(piece)
    return sentences


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lowercase, punctuation removed, articles removed, whitespace collapsed."""
    text = strip_citations(text).lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(answer: str, ground_truth: str) -> float:
    """Harmonic mean of token precision and recall of the normalised answer against the ground truth."""
    predicted, gold = normalize_answer(answer).split(), normalize_answer(ground_truth).split()
    if not predicted or not gold:
        return float(predicted == gold)
    same = sum((Counter(predicted) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def rouge_tokens(text: str) -> list[str]:
    return _ROUGE_TOKEN.findall(strip_citations(text).lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, two rows)."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(answer: str, ground_truth: str) -> float:
    """ROUGE-L F1: LCS / answer tokens (precision) and LCS / ground-truth tokens (recall), harmonic mean."""
    predicted, gold = rouge_tokens(answer), rouge_tokens(ground_truth)
    if not predicted or not gold:
        return 0.0
    common = lcs_length(predicted, gold)
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def citation_coverage(answer: str, num_contexts: int) -> float:
    """Sentences with at least one `[n]` citing a given context (1 <= n <= num_contexts) over all sentences.

    Raises `Unscorable` when the answer has no sentences (an empty answer has nothing to cover).
    """
    sentences = split_sentences(answer)
    if not sentences:
        raise Unscorable("the answer has no sentences")
    covered = sum(1 for s in sentences if any(1 <= n <= num_contexts for n in cited_numbers(s)))
    return covered / len(sentences)


def cosine(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Cosine similarity; raises `Unscorable` for a zero vector."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = float(np.linalg.norm(x) * np.linalg.norm(y))
    if norms == 0.0:
        raise Unscorable("cannot compare a zero vector")
    return float(x @ y) / norms
