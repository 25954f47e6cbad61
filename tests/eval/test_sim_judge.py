"""The simulator's judge replies (`mini.testing.sim.judge_reply`) answer every prompt of `mini.eval.judge`
in a shape its parsers accept, decided by word overlap; other conversations get the replies they always got."""

from __future__ import annotations

from mini.eval.judge import (
    attribution_messages,
    parse_flags,
    parse_questions,
    parse_statements,
    parse_usefulness,
    questions_messages,
    statements_messages,
    usefulness_messages,
    verdicts_messages,
)
from mini.testing.sim import answer_for

CONTEXT = "[1] Glass bottles and jars are collected on the first Wednesday of every month."


def test_statements_and_verdicts() -> None:
    reply = answer_for(statements_messages("When?", "Glass is collected monthly. Paper goes weekly."))
    statements = parse_statements(reply)
    assert statements == ["Glass is collected monthly.", "Paper goes weekly."]
    verdicts = answer_for(
        verdicts_messages(CONTEXT, ["Glass bottles are collected monthly.", "Paper goes weekly."])
    )
    assert parse_flags(verdicts, 2, key="verdicts", field="verdict") == [1, 0]


def test_questions_flag_noncommittal_answers() -> None:
    committal = parse_questions(answer_for(questions_messages("Glass is collected monthly.", 3)))
    assert len(committal) == 3 and all(q.endswith("?") and flag == 0 for q, flag in committal)
    evasive = parse_questions(answer_for(questions_messages("I don't know.", 2)))
    assert [flag for _, flag in evasive] == [1, 1]


def test_usefulness_and_attribution() -> None:
    truth = "Glass bottles and jars are collected on the first Wednesday of every month."
    assert parse_usefulness(answer_for(usefulness_messages("When?", CONTEXT, truth))) == 1
    assert parse_usefulness(answer_for(usefulness_messages("When?", "[1] Dogs need a licence.", truth))) == 0
    reply = answer_for(attribution_messages("When?", CONTEXT, [truth, "Paper goes weekly."]))
    assert parse_flags(reply, 2, key="classifications", field="attributed") == [1, 0]


def test_other_json_messages_are_echoed_as_before() -> None:
    assert answer_for([{"role": "user", "content": '{"a": 1}'}]) == 'Simulated answer: {"a": 1}'
    assert (
        answer_for([{"role": "user", "content": '{"task": "poem"}'}]) == 'Simulated answer: {"task": "poem"}'
    )
