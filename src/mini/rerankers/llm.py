"""LLM reranker: every candidate scored 0-10 by its own chat call, all calls concurrent, bounded twice.

Pointwise rather than listwise: each call is small and independent, so a 40-candidate rerank takes about one
round trip (the calls run concurrently under the provider's shared limiter) and no candidate is ever dropped
for not fitting a prompt. mini-rag 0.1.3 scored only the first 20 candidates; here every candidate is scored.

Scores are the model's 0-10 judgement divided by 10, so they lie in [0, 1]. A reply with no readable score
ranks after every scored candidate (in retrieval order among themselves) with score 0.0: an unreadable reply
carries no judgement, so it must not displace a candidate the model did judge; if every reply is unreadable
the result is the retrieval order. Provider errors (after the adapter's own retries) propagate: whether to
degrade to the retrieval order is the pipeline's decision.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence

from mini._checks import at_least
from mini._tasks import gather_all
from mini.llms.base import LLM, Message
from mini.rerankers._ranking import rank_by_scores
from mini.types import RetrievalResult

log = logging.getLogger("mini.rerankers")

SCALE = 10  # the prompt asks for an integer from 0 to SCALE
MAX_PASSAGE_CHARS = 2000  # about 500 tokens: enough to judge relevance, cheap enough to send 40 at once
DEFAULT_MAX_TOKENS = 16  # "Score: 7/10" and some slack; reasoning models need far more (pass max_tokens=None)

SCORE_SYSTEM = (
    "You judge how relevant a passage is to a search query. "
    f"Answer with one integer from 0 (unrelated) to {SCALE} (fully answers the query) and nothing else."
)

PromptBuilder = Callable[[str, str], Sequence[Message]]


def truncate_passage(text: str, limit: int = MAX_PASSAGE_CHARS) -> str:
    """`text` with whitespace collapsed, cut to at most `limit` characters (at a word boundary when one is
    near the end) with an ellipsis marking the cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - 1)]
    space = cut.rfind(" ")
    if space >= limit * 0.8:  # only back off to a word boundary that loses little
        cut = cut[:space]
    return cut + "…"


def score_messages(query: str, passage: str, *, max_chars: int = MAX_PASSAGE_CHARS) -> list[Message]:
    """The default prompt: a system instruction, then the query and the (truncated) passage."""
    user = (
        f"Query: {query.strip()}\n\nPassage:\n{truncate_passage(passage, max_chars)}\n\n"
        f"Relevance (0-{SCALE}):"
    )
    return [{"role": "system", "content": SCORE_SYSTEM}, {"role": "user", "content": user}]


_NUMBER = r"(-?\d+(?:\.\d+)?)"  # a sign is kept so that "-3" is rejected, not read as 3
_THINKING = re.compile(r"<think(?:ing)?>.*?</think(?:ing)?>", re.IGNORECASE | re.DOTALL)
_OUT_OF = rf"\s*(?:/|out\s+of)\s*{_NUMBER}"
# "Score: 7", "**Relevance score**: 8/10", "Relevance (0-10): 6" (the prompt echoed), "rating = 6 out of 10".
_LABELLED = re.compile(
    rf"\b(?:score|relevance|rating)\b(?:\s*\([^)\n]*\))?[\s*_:=]*(?:-\s+)?{_NUMBER}(?:{_OUT_OF})?",
    re.IGNORECASE,
)
_FRACTION = re.compile(rf"(?<![\d.-]){_NUMBER}{_OUT_OF}", re.IGNORECASE)
_LEADING = re.compile(rf"^[\s*_\"'`(\[]*{_NUMBER}(?![\d/-])")
_ANY_NUMBER = re.compile(rf"(?<![\d.-]){_NUMBER}")


def _ratio(value: str, out_of: str | None, scale: float) -> float | None:
    number, denominator = float(value), float(out_of) if out_of else scale
    if denominator <= 0 or not 0 <= number <= denominator:
        return None  # "Score: 12" on a 0-10 scale was misread somewhere; do not guess
    return number / denominator


def parse_score(text: str, *, scale: float = SCALE) -> float | None:
    """A relevance score in [0, 1] from a model's reply, or None when the reply holds no readable score.

    In order of trust: a labelled score ("Score: 7", "**Relevance:** 8/10"; of several, the last, since
    models that explain themselves state the verdict last), a fraction ("6 out of 10", "3/5"), a reply that
    starts with a number ("7", "7.5 - relevant"), the only number in the reply ("I'd rate it 7"). Bare
    numbers are on the 0-`scale` scale. Reasoning blocks (`<think>...</think>`) are ignored. Numbers out of
    range, or several unlabelled numbers, give None rather than a guess.
    """
    text = _THINKING.sub(" ", text)
    labelled = list(_LABELLED.finditer(text))
    if labelled:
        return _ratio(labelled[-1].group(1), labelled[-1].group(2), scale)
    fraction = _FRACTION.search(text)
    if fraction:
        return _ratio(fraction.group(1), fraction.group(2), scale)
    leading = _LEADING.match(text)
    if leading:
        return _ratio(leading.group(1), None, scale)
    numbers = _ANY_NUMBER.findall(text)
    if len(numbers) == 1:
        return _ratio(numbers[0], None, scale)
    return None


class LLMReranker:
    """Scores every candidate with one `llm.complete` call each, at most `max_concurrency` at a time.

    The LLM adapter adds its provider's shared limiter and retries underneath, so the effective concurrency
    is the lower of the two bounds. `prompt(query, passage)` builds the messages (default `score_messages`,
    which truncates passages to `MAX_PASSAGE_CHARS`); replies are read with `parse_score`. Calls use
    temperature 0 and `max_tokens` (None: the LLM's configured default). Construction does no I/O.
    """

    def __init__(
        self,
        llm: LLM,
        *,
        max_concurrency: int = 16,
        prompt: PromptBuilder = score_messages,
        max_tokens: int | None = DEFAULT_MAX_TOKENS,
    ) -> None:
        at_least(1, max_concurrency=max_concurrency)
        self.llm = llm
        self.name = f"llm:{llm.name}"
        self.max_concurrency = max_concurrency
        self.prompt = prompt
        self.max_tokens = max_tokens

    def __repr__(self) -> str:
        return f"LLMReranker({self.llm.name!r}, max_concurrency={self.max_concurrency})"

    async def _score(self, query: str, candidate: RetrievalResult) -> tuple[float | None, str]:
        completion = await self.llm.complete(
            self.prompt(query, candidate.text), temperature=0.0, max_tokens=self.max_tokens
        )
        return parse_score(completion.text), completion.text

    async def rerank(
        self, query: str, candidates: Sequence[RetrievalResult], *, top_k: int
    ) -> list[RetrievalResult]:
        if not candidates or top_k <= 0:
            return []
        # The first provider error cancels the calls still running and propagates as itself.
        replies = await gather_all(
            (self._score(query, candidate) for candidate in candidates), limit=self.max_concurrency
        )
        scores = [score for score, _ in replies]
        unreadable = [text for score, text in replies if score is None]
        if unreadable:
            log.warning(
                "%s: %d of %d replies held no readable score (ranked last), e.g. %r",
                self.name,
                len(unreadable),
                len(replies),
                unreadable[0][:80],
            )
        return rank_by_scores(candidates, scores, top_k=top_k)
