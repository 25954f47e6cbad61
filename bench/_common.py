"""What the bench scripts share: their command line, the machine line, the markdown table and the simulated RAG.

Scripts run both as `python bench/NAME.py` (bench/ on sys.path) and `python -m bench.NAME` (the repo root on
sys.path), so they import this module as `_common` with `bench._common` as the fallback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# The simulated provider's latencies most scripts expose, with their defaults (ms).
SIM_LATENCIES = {"chat_ms": 300, "token_ms": 5, "embed_ms": 50}


def int_list(text: str) -> list[int]:
    """argparse type for comma-separated integers: `1,8,32`."""
    return [int(x) for x in text.split(",")]


def parser(
    doc: str, *, questions: int | None = None, sim: Iterable[str] = (), **options: int | list[int]
) -> argparse.ArgumentParser:
    """A bench script's parser, described by its docstring's first line. In order: `--questions` if given a
    default, the simulated latencies named in `sim` (keys of SIM_LATENCIES), then one `--name` per keyword,
    an int or a comma-separated list of ints (int_list) like its default."""
    out = argparse.ArgumentParser(description=doc.splitlines()[0])
    if questions is not None:
        out.add_argument("--questions", type=int, default=questions)
    add_latencies(out, *sim)
    for name, default in options.items():
        kind = int_list if isinstance(default, list) else int
        out.add_argument("--" + name.replace("_", "-"), type=kind, default=default)
    return out


def add_latencies(options: argparse.ArgumentParser, *names: str) -> None:
    """`--chat-ms` and friends: one float option per name in SIM_LATENCIES, with its default."""
    for name in names:
        options.add_argument("--" + name.replace("_", "-"), type=float, default=SIM_LATENCIES[name])


def run(main_async: Callable[[argparse.Namespace], Awaitable[str]], args: argparse.ArgumentParser) -> None:
    """Parse the command line, run the benchmark and print its markdown."""
    print(asyncio.run(main_async(args.parse_args())))
    sys.stdout.flush()


def run_writing(
    main_async: Callable[[argparse.Namespace], Awaitable[str]], args: argparse.ArgumentParser, heading: str
) -> None:
    """`run`, with `--no-write`: unless given, the markdown (a section under `heading`) also replaces that
    section of BENCHMARKS.md."""
    args.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")

    async def main_and_write(options: argparse.Namespace) -> str:
        section = await main_async(options)
        if not options.no_write:
            write_section(section, heading)
        return section

    run(main_and_write, args)


def machine(*, cores: bool = True) -> str:
    """`Machine: x86_64, CPython 3.12.3, 2 cores.` (the cores left out if asked)."""
    text = f"Machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    return text + (f", {os.cpu_count() or 0} cores." if cores else ".")


def table(intro: str, columns: list[str], align: str, rows: Iterable[str]) -> str:
    """`intro` then a markdown table: a header of `columns`, aligned one letter per column (`r` right, `l`
    left), and the rows (already formatted `| ... |` lines)."""
    assert len(align) == len(columns), (columns, align)
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return "\n".join([intro + "| " + " | ".join(columns) + " |", rule, *rows])


def sample_questions() -> list[str]:
    """The bundled sample questions, examples/questions.txt."""
    return [q for q in (REPO / "examples" / "questions.txt").read_text().splitlines() if q.strip()]


def sim_embedding(sim: Any, api_key: str = "sim") -> Any:
    from mini import EmbeddingModel

    return EmbeddingModel("openai:sim-embed", base_url=sim.base_url, api_key=api_key, dimension=384)


async def sim_rag(
    sim: Any, tmp: str, *, api_key: str = "sim", llm: dict[str, Any] | None = None, **config: Any
) -> Any:
    """An AgenticRAG on the simulated provider with a store in `tmp`, examples/corpus indexed.

    `llm` adds LLMConfig options; the rest are AgenticRAG options (retrieval_config, reranker_config, ...)."""
    from mini import AgenticRAG, LLMConfig, VectorStore

    rag = AgenticRAG(
        VectorStore(tmp, collection_name="bench"),
        sim_embedding(sim, api_key),
        llm_config=LLMConfig(model="openai:sim-chat", base_url=sim.base_url, api_key=api_key, **(llm or {})),
        **config,
    )
    report = await rag.index_documents_async([REPO / "examples" / "corpus"])
    assert report.ok, report.failures
    return rag


def write_section(section: str, heading: str) -> None:
    """Replace the section under `heading` (a "## " line, up to the next "## " heading) in BENCHMARKS.md with
    `section` (which starts with that heading), or append it."""
    path = REPO / "BENCHMARKS.md"
    text = path.read_text()  # read just before writing: other scripts write their own sections
    if heading + "\n" in text:
        head, rest = text.split(heading + "\n", 1)
        following = rest.find("\n## ")
        text = head + section + (rest[following:] if following != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n")
