"""`mini query --file`: many questions at once, answers printed in input order as soon as each is ready; and the
`--profile` stage table (where a question's time goes, and how much of it is waiting on I/O)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from mini.cli.common import err, out
from mini.errors import InvalidInputError

if TYPE_CHECKING:
    from mini.query.batch import BatchResult
    from mini.rag import AgenticRAG
    from mini.types import RAGResponse

PROFILE_STAGES = ("rewrite", "embed", "search", "rerank", "generate")


def read_questions(path: Path) -> list[str]:
    """One question per line (blank lines and `#` comments skipped); a `.jsonl` file holds objects with a
    "question" field (the `mini eval run` format)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read questions from {path}: {exc}") from exc
    questions = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if path.suffix == ".jsonl":
            try:
                item = json.loads(line)
                line = item["question"]
            except (ValueError, KeyError, TypeError) as exc:
                raise InvalidInputError(f'{path}:{number}: expected {{"question": ...}}: {exc}') from exc
        questions.append(line)
    if not questions:
        raise InvalidInputError(f"{path} holds no questions")
    return questions


@dataclass
class OrderedOutput:
    """Prints (and writes to `jsonl`) results in input order, each as soon as every earlier one is out."""

    total: int
    show: Callable[[BatchResult], None]
    jsonl: IO[str] | None = None
    waiting: dict[int, BatchResult] = field(default_factory=dict)
    results: list[BatchResult] = field(default_factory=list)
    next_index: int = 0

    def add(self, result: BatchResult) -> None:
        self.results.append(result)
        self.waiting[result.index] = result
        while self.next_index in self.waiting:
            self._emit(self.waiting.pop(self.next_index))
            self.next_index += 1

    def flush_finished(self) -> None:
        """After an interruption: the finished answers still waiting for an earlier one, in input order."""
        for index in sorted(self.waiting):
            self._emit(self.waiting.pop(index))

    def _emit(self, result: BatchResult) -> None:
        self.show(result)
        if self.jsonl is not None:
            self.jsonl.write(json.dumps(result.to_dict(), default=str) + "\n")
            self.jsonl.flush()


async def run_batch(
    rag: AgenticRAG,
    questions: Sequence[str],
    output: OrderedOutput,
    *,
    concurrency: int,
    top_k: int | None,
    filter: Mapping[str, Any] | None = None,
    on_result: Callable[[BatchResult], None] | None = None,
) -> None:
    async with rag:
        results = rag.iter_query_batch_async(questions, concurrency=concurrency, top_k=top_k, filter=filter)
        try:
            async for result in results:
                output.add(result)
                if on_result is not None:
                    on_result(result)
        finally:
            await results.aclose()  # type: ignore[attr-defined]


def profile_table(
    responses: Sequence[RAGResponse], *, wall_s: float, cpu_s: float, elapsed_ms: Sequence[float]
) -> tuple[Table, str]:
    """Mean time per stage, its share of the total, and the share of question time this process spent
    waiting (not on its own CPU): seed 003's bottleneck table, and a one-line summary."""
    n = max(1, len(responses))
    means = {
        stage: sum(r.metadata.get("timings_ms", {}).get(stage, 0.0) for r in responses) / n
        for stage in PROFILE_STAGES
    }
    total = sum(r.metadata.get("timings_ms", {}).get("total", 0.0) for r in responses) / n
    table = Table(title=f"where the time goes ({len(responses)} question(s), mean per question)")
    for column, justify in (("stage", "left"), ("ms", "right"), ("share", "right"), ("", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    slowest = max(means, key=lambda s: means[s]) if total else ""
    for stage, ms in means.items():
        share = ms / total if total else 0.0
        bar = "█" * round(share * 30)
        label = f"[bold]{stage}[/] (bottleneck)" if stage == slowest else stage
        table.add_row(label, f"{ms:.1f}", f"{share:.0%}", bar)
    table.add_row("total", f"{total:.1f}", "100%", "")
    question_s = sum(elapsed_ms) / 1000.0
    waiting = 1.0 - min(1.0, cpu_s / question_s) if question_s else 0.0
    summary = (
        f"wall {wall_s:.2f} s; client CPU {cpu_s * 1000 / n:.1f} ms per question; "
        f"waiting on I/O {waiting:.0%} of question time"
    )
    return table, summary


def show_result(total: int, print_response: Callable[[RAGResponse], None]) -> Callable[[BatchResult], None]:
    def show(result: BatchResult) -> None:
        out.print(f"[bold]\\[{result.index + 1}/{total}] {escape(result.question)}[/]")
        if result.response is not None:
            print_response(result.response)
        else:
            error = result.error
            err.print(f"[red]failed:[/] {type(error).__name__}: {escape(str(error))}")
        out.print()

    return show


def show_json_line(result: BatchResult) -> None:
    print(json.dumps(result.to_dict(), default=str), flush=True)


class Stopwatch:
    """Wall and process CPU time (all threads: local inference counts as CPU, not as waiting)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def responses_of(results: Sequence[BatchResult]) -> list[RAGResponse]:
    return [r.response for r in results if r.response is not None]


def summary_line(results: Sequence[BatchResult], wall_s: float) -> str:
    failed = sum(1 for r in results if not r.ok)
    rate = len(results) / wall_s if wall_s else 0.0
    return f"{len(results) - failed} answered, {failed} failed in {wall_s:.2f} s ({rate:.1f} questions/s)"
