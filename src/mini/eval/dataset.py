"""Evaluation questions: load and check a JSONL file, and judge which retrieved chunks are the relevant ones.

One JSON object per line: `question` (required), `ground_truth` (the expected answer), `relevant_ids` (chunk
ids) and/or `relevant_sources` (documents), `id` (defaults to the line number). Blank lines are skipped; any
other field is kept in `metadata`. A bad line is an `InvalidInputError` naming the file and line.

A `relevant_sources` entry names a document the way it was ingested, or its tail: it matches a chunk whose
`metadata["source"]` equals it or ends with "/" + it, comparing whole path components, so
"recycling_schedule.pdf" matches "/home/me/examples/corpus/recycling_schedule.pdf" but "schedule.pdf" does not.
JSON and JSONL rows are stored as "path#row-id": "faq.jsonl#faq-parking" names one row, "faq.jsonl" any row of
the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mini.errors import InvalidInputError
from mini.types import RetrievalResult

_KNOWN = ("id", "question", "ground_truth", "relevant_ids", "relevant_sources")


@dataclass(frozen=True, slots=True)
class EvalItem:
    """One question to evaluate, with what the answer and the retrieval are checked against."""

    question: str
    ground_truth: str | None = None
    relevant_ids: tuple[str, ...] = ()
    relevant_sources: tuple[str, ...] = ()
    id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def has_relevance(self) -> bool:
        return bool(self.relevant_ids or self.relevant_sources)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "question": self.question}
        if self.ground_truth is not None:
            data["ground_truth"] = self.ground_truth
        if self.relevant_ids:
            data["relevant_ids"] = list(self.relevant_ids)
        if self.relevant_sources:
            data["relevant_sources"] = list(self.relevant_sources)
        if self.metadata:
            data["metadata"] = self.metadata
        return data


def item_from_dict(data: Any, *, where: str, default_id: str) -> EvalItem:
    """Check one record; errors start with `where` (e.g. "questions.jsonl line 3")."""
    if not isinstance(data, Mapping):
        raise InvalidInputError(f"{where}: expected a JSON object, got {type(data).__name__}")
    question = data.get("question")
    if not isinstance(question, str) or not question.strip():
        raise InvalidInputError(f"{where}: 'question' is missing or empty")
    ground_truth = data.get("ground_truth")
    if ground_truth is not None and not isinstance(ground_truth, str):
        raise InvalidInputError(f"{where}: 'ground_truth' must be a string")
    lists = {}
    for name in ("relevant_ids", "relevant_sources"):
        value = data.get(name) or []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
            raise InvalidInputError(f"{where}: '{name}' must be a list of strings")
        lists[name] = tuple(str(v) for v in value)
    raw_id = data.get("id")
    return EvalItem(
        question=question.strip(),
        ground_truth=ground_truth.strip() if ground_truth and ground_truth.strip() else None,
        relevant_ids=lists["relevant_ids"],
        relevant_sources=lists["relevant_sources"],
        id=str(raw_id) if raw_id is not None else default_id,
        metadata={k: v for k, v in data.items() if k not in _KNOWN},
    )


def parse_jsonl(lines: Iterable[str], *, name: str = "dataset") -> list[EvalItem]:
    """Items from JSONL text lines; ids default to the 1-based line number."""
    items = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{name} line {number}"
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise InvalidInputError(f"{where}: not valid JSON ({exc})") from exc
        items.append(item_from_dict(data, where=where, default_id=str(number)))
    _check_unique(items, name)
    return items


def load_dataset(path: str | Path) -> list[EvalItem]:
    """Read a JSONL file of questions (blocking: call it in a thread from async code)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInputError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{file}: cannot read it ({exc})") from exc
    items = parse_jsonl(text.splitlines(), name=file.name)
    if not items:
        raise InvalidInputError(f"{file}: no questions in it")
    return items


def as_items(dataset: str | Path | Sequence[EvalItem | Mapping[str, Any] | str]) -> list[EvalItem]:
    """A JSONL path, or a list of `EvalItem`s, dicts (the JSONL fields) or bare question strings."""
    if isinstance(dataset, str | Path):
        return load_dataset(dataset)
    items = []
    for i, entry in enumerate(dataset, start=1):
        if isinstance(entry, EvalItem):
            items.append(entry if entry.id else _with_id(entry, str(i)))
        elif isinstance(entry, str):
            items.append(item_from_dict({"question": entry}, where=f"item {i}", default_id=str(i)))
        else:
            items.append(item_from_dict(entry, where=f"item {i}", default_id=str(i)))
    if not items:
        raise InvalidInputError("the dataset has no questions")
    _check_unique(items, "the dataset")
    return items


def _with_id(item: EvalItem, id_: str) -> EvalItem:
    return EvalItem(
        item.question, item.ground_truth, item.relevant_ids, item.relevant_sources, id_, item.metadata
    )


def _check_unique(items: Sequence[EvalItem], name: str) -> None:
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise InvalidInputError(f"{name}: id {item.id!r} is used twice")
        seen.add(item.id)


def source_matches(source: str, wanted: str) -> bool:
    """Does a chunk's `source` name the document `wanted` (equal, or ending with "/" + wanted)?

    A `wanted` without "#row" also matches every row of that file ("faq.jsonl" matches "x/faq.jsonl#faq-vote").
    """
    wanted = wanted.strip()
    if not wanted or not source:
        return False
    candidates = [source]
    if "#" not in wanted and "#" in source:
        candidates.append(source.partition("#")[0])
    return any(c == wanted or c.endswith("/" + wanted.lstrip("/")) for c in candidates)


def judged_ranking(item: EvalItem, contexts: Sequence[RetrievalResult]) -> tuple[list[str], dict[str, int]]:
    """The contexts as a ranking of ids, and which ids are relevant, for the metrics of `mini.eval.metrics`.

    With `relevant_ids`, chunk ids are ranked. Otherwise each chunk stands for the first `relevant_sources`
    entry it matches (so a document ranks at its best chunk, and recall counts documents found), and an
    unmatched chunk for its own source.
    """
    if item.relevant_ids:
        return [c.id for c in contexts], dict.fromkeys(item.relevant_ids, 1)
    ranked = []
    for chunk in contexts:
        entry = next((w for w in item.relevant_sources if source_matches(chunk.source, w)), None)
        ranked.append(f"wanted:{entry}" if entry is not None else f"other:{chunk.source or chunk.id}")
    return ranked, {f"wanted:{w}": 1 for w in item.relevant_sources}
