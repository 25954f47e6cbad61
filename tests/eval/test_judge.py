"""LLM-judged metrics: prompts, tolerant parsers, RAGAS scores by hand (with the NaN edge cases counted as
failures), and the judge's flows against a scripted fake LLM."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from mini.eval.judge import (
    Judge,
    JudgeParseError,
    answer_relevancy_score,
    context_precision_score,
    context_recall_score,
    extract_json,
    faithfulness_score,
    flag,
    parse_flags,
    parse_questions,
    parse_statements,
    parse_usefulness,
    statements_messages,
    verdicts_messages,
)
from mini.eval.text_metrics import Unscorable
from mini.llms.base import Usage
from mini.testing.fakes import ScriptedLLM

Reply = Callable[[dict[str, Any]], str]


def judge_llm(**replies: Reply | list[str]) -> ScriptedLLM:
    """A `ScriptedLLM` answering each judge prompt with `replies[task](payload)` or the task's next string."""

    def reply(prompt: str) -> str:
        payload = json.loads(prompt)
        answer = replies[payload["task"]]
        return answer.pop(0) if isinstance(answer, list) else answer(payload)

    return ScriptedLLM(reply, usage=Usage(10, 2), name="scripted")


def asked(llm: ScriptedLLM) -> list[str]:
    """The judge tasks `llm` was asked, in order."""
    return [json.loads(call.prompt)["task"] for call in llm.calls]


class TableEmbeddings:
    """Vectors looked up by text."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table

    async def embed_async(self, texts: Sequence[str], *, input_type: str = "document") -> np.ndarray:
        return np.array([self.table[t] for t in texts], dtype=np.float32)


def judge(llm: ScriptedLLM, embeddings: Any = None) -> Judge:
    return Judge(llm, embeddings, questions=3)


# -- prompts and parsers --------------------------------------------------------------------------------------


def test_prompts_send_the_inputs_as_one_json_object() -> None:
    system, user = statements_messages("Who?", 'Bob said "hi".')
    assert system["role"] == "system" and "JSON" in system["content"]
    assert json.loads(user["content"]) == {
        "task": "statements",
        "question": "Who?",
        "answer": 'Bob said "hi".',
    }
    payload = json.loads(verdicts_messages("[1] ctx", ["a", "b"])[1]["content"])
    assert payload == {"task": "verdicts", "context": "[1] ctx", "statements": ["a", "b"]}


def test_json_is_found_in_fences_and_prose() -> None:
    assert extract_json('```json\n{"verdict": 1}\n```') == {"verdict": 1}
    assert extract_json('Sure! Here it is: {"statements": ["a"]} Hope this helps.') == {"statements": ["a"]}
    assert extract_json('{not json} but then {"a": 1}') == {"a": 1}
    assert extract_json("[1, 0]") == [1, 0]
    with pytest.raises(JudgeParseError, match="no JSON"):
        extract_json("I cannot help with that.")


def test_verdict_flags_accept_the_usual_spellings() -> None:
    assert [flag(v) for v in (1, 0, True, False, "yes", "No", " 1 ", "true", 1.0)] == [
        1,
        0,
        1,
        0,
        1,
        0,
        1,
        1,
        1,
    ]
    for bad in ("maybe", 2, None):
        with pytest.raises(JudgeParseError):
            flag(bad)


def test_parsers_take_wrapped_or_bare_lists_and_check_counts() -> None:
    assert parse_statements('{"statements": ["a", " ", "b "]}') == ["a", "b"]
    assert parse_statements('[{"statement": "a"}]') == ["a"]
    assert parse_statements('{"statements": []}') == []
    reply = '{"verdicts": [{"statement": "a", "reason": "r", "verdict": 1}, {"verdict": "no"}]}'
    assert parse_flags(reply, 2, key="verdicts", field="verdict") == [1, 0]
    assert parse_flags("[1, 0, 1]", 3, key="verdicts", field="verdict") == [1, 0, 1]
    with pytest.raises(JudgeParseError, match="expected 3 verdicts, got 2"):
        parse_flags(reply, 3, key="verdicts", field="verdict")
    with pytest.raises(JudgeParseError):
        parse_statements('{"claims": ["a"]}')


def test_question_and_usefulness_parsers() -> None:
    reply = '{"questions": [{"question": "Q1?", "noncommittal": 0}, {"question": "Q2?", "noncommittal": 1}]}'
    assert parse_questions(reply) == [("Q1?", 0), ("Q2?", 1)]
    assert parse_questions('{"question": "Q?", "noncommittal": 1}') == [("Q?", 1)]  # RAGAS' single shape
    assert parse_questions('["Q?"]') == [("Q?", 0)]
    assert parse_usefulness('{"reason": "r", "verdict": "1"}') == 1
    assert parse_usefulness('[{"verdict": 0}]') == 0
    with pytest.raises(JudgeParseError):
        parse_usefulness('{"reason": "forgot"}')


# -- scores by hand ---------------------------------------------------------------------------------------------


def test_faithfulness_is_supported_over_all_statements() -> None:
    assert faithfulness_score([1, 0, 1]) == pytest.approx(2 / 3)
    assert faithfulness_score([0]) == 0.0
    with pytest.raises(Unscorable, match="no statements"):  # RAGAS: NaN; here a failure with its reason
        faithfulness_score([])


def test_answer_relevancy_is_mean_similarity_unless_all_noncommittal() -> None:
    assert answer_relevancy_score([0.9, 0.6, 0.3], [0, 1, 0]) == pytest.approx(0.6)  # one flag: kept
    assert answer_relevancy_score([0.9, 0.6, 0.3], [1, 1, 1]) == 0.0  # all noncommittal
    with pytest.raises(Unscorable, match="no questions"):
        answer_relevancy_score([], [])


def test_context_precision_weights_useful_contexts_by_rank() -> None:
    # [1, 0, 1]: (1/1 * 1 + 1/2 * 0 + 2/3 * 1) / 2 useful = 0.8333
    assert context_precision_score([1, 0, 1]) == pytest.approx((1 + 2 / 3) / 2)
    # [0, 1, 1]: (1/2 + 2/3) / 2 = 0.58333: the same two contexts ranked lower score less
    assert context_precision_score([0, 1, 1]) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert context_precision_score([1, 1, 1]) == 1.0
    assert context_precision_score([0, 0]) == 0.0  # nothing useful (RAGAS: 0, not NaN)
    assert context_precision_score([]) == 0.0  # nothing retrieved


def test_context_recall_is_attributed_over_ground_truth_sentences() -> None:
    assert context_recall_score([1, 0, 1]) == pytest.approx(2 / 3)
    with pytest.raises(Unscorable, match="no sentences"):
        context_recall_score([])


# -- flows against a scripted LLM -------------------------------------------------------------------------------


def _statements(*items: str) -> Reply:
    return lambda payload: json.dumps({"statements": list(items)})


def _verdicts(*flags: int) -> Reply:
    return lambda payload: json.dumps(
        {
            "verdicts": [
                {"statement": s, "verdict": f} for s, f in zip(payload["statements"], flags, strict=True)
            ]
        }
    )


async def test_faithfulness_asks_for_statements_then_verdicts() -> None:
    llm = judge_llm(statements=_statements("A.", "B.", "C."), verdicts=_verdicts(1, 1, 0))
    value, details = await judge(llm).faithfulness("Q?", "A. B [1]. C [2].", ["ctx one", "ctx two"])
    assert value == pytest.approx(2 / 3)
    assert details == {"statements": ["A.", "B.", "C."], "verdicts": [1, 1, 0]}
    assert asked(llm) == ["statements", "verdicts"]


async def test_faithfulness_without_statements_fails_with_the_reason() -> None:
    llm = judge_llm(statements=_statements())
    with pytest.raises(Unscorable, match="no statements"):
        await judge(llm).faithfulness("Q?", "Hmm.", ["ctx"])
    with pytest.raises(Unscorable, match="answer is empty"):
        await judge(llm).faithfulness("Q?", " [1] ", ["ctx"])


async def test_faithfulness_with_nothing_retrieved_is_zero_without_asking_for_verdicts() -> None:
    llm = judge_llm(statements=_statements("A.", "B."))
    value, details = await judge(llm).faithfulness("Q?", "A. B.", [])
    assert value == 0.0 and details["verdicts"] == [0, 0] and asked(llm) == ["statements"]


async def test_an_unparsable_reply_is_asked_again_once_then_fails() -> None:
    llm = judge_llm(statements=["no json here", '{"statements": ["A."]}'], verdicts=_verdicts(1))
    value, _ = await judge(llm).faithfulness("Q?", "A.", ["ctx"])
    assert value == 1.0 and asked(llm) == ["statements", "statements", "verdicts"]

    stubborn = judge_llm(statements=["still no json", "nor now"])
    with pytest.raises(Unscorable, match="did not parse: no JSON"):
        await judge(stubborn).faithfulness("Q?", "A.", ["ctx"])
    assert asked(stubborn) == ["statements", "statements"]


async def test_answer_relevancy_averages_cosines_to_the_question() -> None:
    questions = json.dumps({"questions": [{"question": q, "noncommittal": 0} for q in ("q1", "q2", "q3")]})
    llm = judge_llm(questions=lambda payload: questions)
    vectors = TableEmbeddings({"Q?": [1, 0], "q1": [1, 0], "q2": [0, 1], "q3": [1, 1]})
    value, details = await judge(llm, vectors).answer_relevancy("Q?", "An answer [1].")
    # cosines 1, 0, 0.7071 -> mean 0.569
    assert value == pytest.approx((1 + 0 + 1 / math.sqrt(2)) / 3)
    assert details["questions"] == ["q1", "q2", "q3"] and details["noncommittal"] == [0, 0, 0]


async def test_answer_relevancy_is_zero_when_every_question_is_noncommittal() -> None:
    reply = json.dumps(
        {"questions": [{"question": "q1", "noncommittal": 1}, {"question": "q2", "noncommittal": 1}]}
    )
    llm = judge_llm(questions=lambda payload: reply)
    vectors = TableEmbeddings({"Q?": [1, 0], "q1": [1, 0], "q2": [1, 0]})
    value, _ = await judge(llm, vectors).answer_relevancy("Q?", "I don't know.")
    assert value == 0.0


async def test_answer_relevancy_with_only_empty_questions_fails() -> None:
    llm = judge_llm(questions=lambda payload: '{"questions": [{"question": "", "noncommittal": 0}]}')
    with pytest.raises(Unscorable, match="no questions"):
        await judge(llm).answer_relevancy("Q?", "Answer.")


async def test_context_precision_asks_once_per_context_in_rank_order() -> None:
    useful = {"alpha": 1, "beta": 0, "gamma": 1}
    llm = judge_llm(usefulness=lambda p: json.dumps({"reason": "", "verdict": useful[p["context"]]}))
    value, details = await judge(llm).context_precision(
        "Q?", ["alpha", "beta", "gamma"], "truth", reference_kind="ground_truth"
    )
    assert value == pytest.approx((1 + 2 / 3) / 2)
    assert details == {"verdicts": [1, 0, 1], "reference": "ground_truth"}
    assert asked(llm) == ["usefulness"] * 3


async def test_context_recall_classifies_each_ground_truth_sentence() -> None:
    def attribution(payload: dict[str, Any]) -> str:
        assert payload["sentences"] == ["Glass goes monthly.", "Jars are rinsed.", "Lids come off."]
        return json.dumps({"classifications": [{"attributed": a} for a in (1, 0, 1)]})

    llm = judge_llm(attribution=attribution)
    truth = "Glass goes monthly. Jars are rinsed. Lids come off."
    value, details = await judge(llm).context_recall("Q?", ["ctx"], truth)
    assert value == pytest.approx(2 / 3) and details["attributed"] == [1, 0, 1]

    value, _ = await judge(llm).context_recall("Q?", [], truth)  # nothing retrieved: 0 without asking
    assert value == 0.0 and asked(llm) == ["attribution"]
    with pytest.raises(Unscorable, match="no sentences"):
        await judge(llm).context_recall("Q?", ["ctx"], "...")


async def test_judge_counts_the_tokens_it_spent() -> None:
    llm = judge_llm(statements=_statements("A."), verdicts=_verdicts(1))
    j = judge(llm)
    await j.faithfulness("Q?", "A.", ["ctx"])
    assert j.usage == Usage(20, 4)
