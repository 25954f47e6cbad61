"""LLM-judged metrics, following the RAGAS definitions: prompts and parsers (pure), scores (pure), and `Judge`,
which asks the configured LLM (through its adapter: the provider's limiter and retries) and scores a row.

- faithfulness = statements the context supports / statements. The judge splits the answer (citation markers
  removed) into standalone statements, then gives each a verdict against the numbered contexts. No statements
  -> `Unscorable` (RAGAS: NaN). Nothing retrieved -> every verdict 0, without asking.
- answer relevancy = mean cosine(question, q_i) over `n` questions the judge generates from the answer, times 0
  when every q_i is flagged noncommittal ("I don't know"), as RAGAS >= 0.2 does. All questions empty ->
  `Unscorable` (RAGAS: NaN); empty ones are otherwise dropped. All texts are embedded as queries.
  One call asks for the `n` questions (RAGAS samples `n` completions; the score is the same formula).
- context precision = sum_k(precision@k * v_k) / (number of useful contexts), v_k the judge's verdict on whether
  context k (in rank order, one call each) was useful for the reference: the ground truth when given, else the
  answer (RAGAS' "with/without reference" variants). No useful context, or none retrieved -> 0.0 (as RAGAS).
- context recall = ground-truth sentences attributable to the contexts / ground-truth sentences. Sentences are
  split here (`split_sentences`, deterministic), and the judge classifies each. No sentences -> `Unscorable`
  (RAGAS: NaN); nothing retrieved -> 0.0 without asking.

A reply that does not parse is asked again once; if it still does not, the metric fails with the reason.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from mini._tasks import gather_all
from mini.eval.metrics import mean
from mini.eval.text_metrics import Unscorable, cosine, split_sentences, strip_citations
from mini.llms.base import Usage

if TYPE_CHECKING:
    from mini.embeddings.base import EmbeddingModel
    from mini.llms.base import LLM

T = TypeVar("T")
Message = dict[str, str]
Details = dict[str, Any]
log = logging.getLogger("mini.eval")

_JSON_ONLY = "Reply with JSON only, in this shape: "
STATEMENTS_SYSTEM = (
    "Given a question and an answer, analyse each sentence of the answer and break it down into one or more "
    "fully understandable statements. Use no pronouns: every statement must make sense on its own. If the "
    "answer makes no claim at all, return an empty list.\n"
    + _JSON_ONLY
    + '{"statements": ["...", "..."]}\n\n'
    'Example input: {"question": "Who founded the town?", "answer": "Fishing families founded it in 1852."}\n'
    'Example output: {"statements": ["Fishing families founded the town.", "The town was founded in 1852."]}'
)
VERDICTS_SYSTEM = (
    "Judge the faithfulness of a series of statements based on a given context. For each statement, in the "
    "order given, return verdict 1 if the statement can be directly inferred from the context, or 0 if it "
    "cannot, with a short reason.\n"
    + _JSON_ONLY
    + '{"verdicts": [{"statement": "...", "reason": "...", "verdict": 1}]}'
)
QUESTIONS_SYSTEM = (
    "Generate `n` different questions (n is given in the input) that the given answer answers, and say for "
    "each whether the answer is noncommittal: 1 if it is evasive, vague or ambiguous (for example \"I don't "
    'know" or "I\'m not sure"), else 0.\n'
    + _JSON_ONLY
    + '{"questions": [{"question": "...", "noncommittal": 0}]}'
)
USEFULNESS_SYSTEM = (
    "Given a question, a reference answer and a context, verify whether the context was useful in arriving at "
    "the reference answer: verdict 1 if it was useful, 0 if it was not, with a short reason.\n"
    + _JSON_ONLY
    + '{"reason": "...", "verdict": 1}'
)
ATTRIBUTION_SYSTEM = (
    "Given a context and the sentences of a reference answer, classify each sentence, in the order given: "
    "attributed 1 if it can be attributed to the context (the context supports it), 0 if it cannot, with a "
    "short reason.\n"
    + _JSON_ONLY
    + '{"classifications": [{"sentence": "...", "reason": "...", "attributed": 1}]}'
)


class JudgeParseError(ValueError):
    """The judge's reply is not in the requested shape."""


# -- prompts ------------------------------------------------------------------------------------------------------


def _messages(system: str, task: str, **inputs: Any) -> list[Message]:
    # The input is one JSON object (RAGAS' prompt style); "task" names the step, the simulator answers by it.
    user = json.dumps({"task": task, **inputs}, ensure_ascii=False)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def format_contexts(contexts: Sequence[str]) -> str:
    return "\n\n".join(f"[{i}] {' '.join(text.split())}" for i, text in enumerate(contexts, start=1))


def statements_messages(question: str, answer: str) -> list[Message]:
    return _messages(STATEMENTS_SYSTEM, "statements", question=question, answer=answer)


def verdicts_messages(context: str, statements: Sequence[str]) -> list[Message]:
    return _messages(VERDICTS_SYSTEM, "verdicts", context=context, statements=list(statements))


def questions_messages(answer: str, n: int) -> list[Message]:
    return _messages(QUESTIONS_SYSTEM, "questions", answer=answer, n=n)


def usefulness_messages(question: str, context: str, reference: str) -> list[Message]:
    return _messages(USEFULNESS_SYSTEM, "usefulness", question=question, context=context, reference=reference)


def attribution_messages(question: str, context: str, sentences: Sequence[str]) -> list[Message]:
    return _messages(
        ATTRIBUTION_SYSTEM, "attribution", question=question, context=context, sentences=list(sentences)
    )


# -- parsers ------------------------------------------------------------------------------------------------------

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
_TRUE = {"1", "yes", "true", "y"}
_FALSE = {"0", "no", "false", "n"}


def extract_json(text: str) -> Any:
    """The first JSON object or array in `text`, inside a ``` fence or surrounded by prose."""
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced else text
    decoder = json.JSONDecoder()
    starts = [i for i, ch in enumerate(body) if ch in "{["][:20]
    for start in starts:
        try:
            return decoder.raw_decode(body, start)[0]
        except ValueError:
            continue
    raise JudgeParseError(f"no JSON in the reply {_clip(text)}")


def _clip(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _items(value: Any, key: str) -> list[Any]:
    """The list under `key`, or the value itself when the judge returned the bare list."""
    if isinstance(value, Mapping):
        value = value.get(key)
    if not isinstance(value, list):
        raise JudgeParseError(f"expected a list under {key!r}")
    return value


def flag(value: Any) -> int:
    """A 0/1 verdict from 1, 0, true, false, "yes", "no", "1", "0"."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return int(value.strip().lower() in _TRUE)
    raise JudgeParseError(f"{value!r} is not a 0/1 verdict")


def parse_statements(text: str) -> list[str]:
    statements = []
    for item in _items(extract_json(text), "statements"):
        statement = item.get("statement") if isinstance(item, Mapping) else item
        if not isinstance(statement, str):
            raise JudgeParseError(f"statement {statement!r} is not a string")
        if statement.strip():
            statements.append(statement.strip())
    return statements


def parse_flags(text: str, expected: int, *, key: str, field: str) -> list[int]:
    """One 0/1 per item under `key` (objects with `field`, or bare flags); exactly `expected` of them."""
    items = _items(extract_json(text), key)
    flags = [flag(item.get(field) if isinstance(item, Mapping) else item) for item in items]
    if len(flags) != expected:
        raise JudgeParseError(f"expected {expected} verdicts, got {len(flags)}")
    return flags


def parse_questions(text: str) -> list[tuple[str, int]]:
    value = extract_json(text)
    if isinstance(value, Mapping) and "question" in value:  # one question, RAGAS' own output shape
        value = [value]
    out = []
    for item in _items(value, "questions"):
        if isinstance(item, str):
            out.append((item.strip(), 0))
        elif isinstance(item, Mapping) and isinstance(item.get("question", ""), str):
            out.append((str(item.get("question", "")).strip(), flag(item.get("noncommittal", 0))))
        else:
            raise JudgeParseError(f"question {item!r} is not a string or an object")
    return out


def parse_usefulness(text: str) -> int:
    value = extract_json(text)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, Mapping) or "verdict" not in value:
        raise JudgeParseError("expected an object with a 'verdict'")
    return flag(value["verdict"])


# -- scores (pure) ------------------------------------------------------------------------------------------------


def faithfulness_score(verdicts: Sequence[int]) -> float:
    if not verdicts:
        raise Unscorable("no statements: the answer makes no claim to check")
    return sum(verdicts) / len(verdicts)


def answer_relevancy_score(similarities: Sequence[float], noncommittal: Sequence[int]) -> float:
    if not similarities:
        raise Unscorable("the judge generated no questions from the answer")
    if noncommittal and all(noncommittal):
        return 0.0
    return mean(similarities)


def context_precision_score(verdicts: Sequence[int]) -> float:
    useful = sum(verdicts)
    if useful == 0:
        return 0.0
    hits = 0
    total = 0.0
    for k, verdict in enumerate(verdicts, start=1):
        hits += verdict
        total += hits / k * verdict
    return total / useful


def context_recall_score(attributed: Sequence[int]) -> float:
    if not attributed:
        raise Unscorable("the ground truth has no sentences")
    return sum(attributed) / len(attributed)


# -- asking the LLM -----------------------------------------------------------------------------------------------


class Judge:
    """Scores rows with `llm`. Every call is made under `slots` (the evaluation's bound on requests in flight)
    and through the LLM adapter, so it shares the provider's limiter and is retried on 429/5xx/timeouts."""

    def __init__(
        self,
        llm: LLM,
        embedding_model: EmbeddingModel,
        *,
        slots: contextlib.AbstractAsyncContextManager[Any] | None = None,
        questions: int = 3,
        parse_retries: int = 1,
    ) -> None:
        self.llm = llm
        self.embedding_model = embedding_model
        self.questions = questions
        self.parse_retries = parse_retries
        self.usage = Usage()
        self._slots = slots if slots is not None else contextlib.nullcontext()

    @property
    def name(self) -> str:
        return self.llm.name

    async def ask(self, messages: list[Message], parse: Callable[[str], T]) -> T:
        error: JudgeParseError | None = None
        for _attempt in range(1 + self.parse_retries):
            async with self._slots:
                completion = await self.llm.complete(messages, temperature=0.0)
            self.usage = self.usage + completion.usage
            try:
                return parse(completion.text)
            except JudgeParseError as exc:
                log.debug("judge reply did not parse (%s): %s", exc, completion.text[:500])
                error = exc
        raise Unscorable(f"the judge's reply did not parse: {error}")

    async def faithfulness(
        self, question: str, answer: str, contexts: Sequence[str]
    ) -> tuple[float, Details]:
        text = strip_citations(answer)
        if not text:
            raise Unscorable("no statements: the answer is empty")
        statements = await self.ask(statements_messages(question, text), parse_statements)
        if not statements:
            raise Unscorable("no statements: the answer makes no claim to check")
        if contexts:
            messages = verdicts_messages(format_contexts(contexts), statements)
            verdicts = await self.ask(
                messages, lambda t: parse_flags(t, len(statements), key="verdicts", field="verdict")
            )
        else:
            verdicts = [0] * len(statements)  # nothing retrieved: nothing can be inferred from it
        return faithfulness_score(verdicts), {"statements": statements, "verdicts": verdicts}

    async def answer_relevancy(self, question: str, answer: str) -> tuple[float, Details]:
        text = strip_citations(answer)
        generated = await self.ask(questions_messages(text, self.questions), parse_questions)
        questions = [q for q, _ in generated if q]
        flags = [nc for _, nc in generated]
        details: Details = {"questions": questions, "noncommittal": flags}
        if not questions:
            raise Unscorable("the judge generated no questions from the answer")
        async with self._slots:
            vectors = await self.embedding_model.embed_async([question, *questions], input_type="query")
        similarities = [cosine(vectors[0], v) for v in vectors[1:]]
        details["similarities"] = [round(s, 4) for s in similarities]
        return answer_relevancy_score(similarities, flags), details

    async def context_precision(
        self, question: str, contexts: Sequence[str], reference: str, *, reference_kind: str
    ) -> tuple[float, Details]:
        verdicts = await gather_all(
            self.ask(usefulness_messages(question, " ".join(c.split()), reference), parse_usefulness)
            for c in contexts
        )
        return context_precision_score(verdicts), {"verdicts": verdicts, "reference": reference_kind}

    async def context_recall(
        self, question: str, contexts: Sequence[str], ground_truth: str
    ) -> tuple[float, Details]:
        sentences = split_sentences(ground_truth)
        if not sentences:
            raise Unscorable("the ground truth has no sentences")
        if contexts:
            messages = attribution_messages(question, format_contexts(contexts), sentences)
            attributed = await self.ask(
                messages,
                lambda t: parse_flags(t, len(sentences), key="classifications", field="attributed"),
            )
        else:
            attributed = [0] * len(sentences)  # nothing retrieved: nothing is attributable
        return context_recall_score(attributed), {"sentences": sentences, "attributed": attributed}
