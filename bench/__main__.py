"""The benchmark suite: every async-speedup claim, re-run in one command, written into BENCHMARKS.md.

    python -m bench                 # or: make bench   (all, ~5 minutes on 2 cores)
    python -m bench --only agentic,batch_file --no-write
    python -m bench --long          # also the long runs (scale, 100,000 documents, SciFact int8: ~30 min)

Each benchmark is its own script under bench/ (run alone for more options) and runs in its own process
against the simulated provider (`mini.testing.sim`, its own process too). The suite collects their
markdown and replaces the block between the suite markers in BENCHMARKS.md, with the machine and the command.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- suite:begin (written by python -m bench) -->", "<!-- suite:end -->"

# (name, title, script arguments)
SUITE: list[tuple[str, str, list[str]]] = [
    (
        "query_concurrency",
        "Query batch: 64 questions at concurrency 1/8/32/64, measured vs ideal, client CPU per question",
        ["bench/query_concurrency.py"],
    ),
    (
        "agentic",
        "Agentic query: rewrite + hybrid retrieval + LLM rerank + answer, vs its critical path",
        ["bench/agentic.py"],
    ),
    (
        "batch_file",
        "Batch-file mode: `mini query --file` at --concurrency 1 vs 3 vs 10",
        ["bench/batch_file.py"],
    ),
    (
        "ingest",
        "Ingestion: concurrent batches vs one request at a time",
        ["bench/ingest.py", "--rss-docs", "0"],
    ),
    (
        "eval_concurrency",
        "Evaluation: 50 questions, --concurrency 16 vs --sequential",
        ["bench/eval_concurrency.py"],
    ),
    (
        "cold_start",
        "Cold start: `mini query --llm none` in a fresh process on the demo store, and where its time goes",
        ["bench/cold_start.py", "--no-write"],
    ),
    (
        "local_embeddings",
        "Local embeddings: float vs int8, one core vs every core (sentence-transformers if installed here)",
        ["bench/local_embeddings.py", "--no-write"],
    ),
    (
        "keyword_leg",
        "Keyword leg: hybrid vs dense CPU per question at concurrency 64",
        ["bench/query_concurrency.py", "--mode", "hybrid", "--levels", "64"],
    ),
    (
        "shared_limits",
        "Provider limits shared through Redis: in-process limiter vs Redis-backed, one query batch",
        ["bench/shared_limits.py", "--no-write"],
    ),
]

# Long runs (minutes each), only with --long.
LONG: list[tuple[str, str, list[str]]] = [
    (
        "ingest_scale",
        "Ingestion at scale: `Ingestor` vs a raw aiohttp + LanceDB pipeline (500 docs), then 100,000 documents",
        ["bench/ingest_scale.py", "--scale-docs", "100000"],
    ),
    (
        "scale_process",
        "Scale of one process: 2,048 questions at concurrency 64/256/512/1,024 (dense), loop lag, CPU",
        ["bench/scale_process.py"],
    ),
    (
        "server_load",
        "Scale of one server: `mini serve` holding up to 1,000 SSE streams, then a burst, then queries",
        ["bench/server_load.py"],
    ),
    (
        "scifact_index",
        "Indexing all of BEIR SciFact with the default local model (5,183 abstracts, 13,071 chunks)",
        ["bench/scifact_index.py"],
    ),
    (
        "int8_quality",
        "int8 vs float all-MiniLM-L6-v2 on SciFact: the int8 default's bar",
        ["bench/local_embeddings.py", "--ndcg", "--no-write"],
    ),
    (
        "ray_ingest",
        "Ingestion on a local Ray cluster (head + one worker node) vs one process: 2,000 files, Ray tasks vs Ray Data",
        ["bench/ray_ingest.py"],
    ),
]


def run(script: list[str]) -> tuple[str, float]:
    started = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "MINI_", "LANGFUSE_"))}
    done = subprocess.run(
        [sys.executable, *script], cwd=REPO, capture_output=True, text=True, env=env, timeout=1800
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(script)} failed:\n{done.stderr[-4000:]}")
    return done.stdout.strip(), time.perf_counter() - started


def machine() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()} {platform.release()}"
    )


def write_block(block: str) -> None:
    path = REPO / "BENCHMARKS.md"
    text = path.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:  # first run: after the introduction, before the first section
        intro, sep, rest = text.partition("\n## ")
        text = intro + "\n" + block + "\n" + sep + rest
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated names: " + ", ".join(name for name, _, _ in SUITE))
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument(
        "--long", action="store_true", help="also the long runs: " + ", ".join(n for n, _, _ in LONG)
    )
    args = parser.parse_args()
    suite = SUITE + LONG if args.long else SUITE
    chosen = [item for item in suite if not args.only or item[0] in args.only.split(",")]
    command = (
        "python -m bench" + (" --long" if args.long else "") + (f" --only {args.only}" if args.only else "")
    )
    parts = [
        BEGIN,
        "## The suite: `python -m bench`\n",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; command: `{command}`. Each part is the "
        "script named in its heading, run in its own process against the simulated provider; see the sections "
        "below for what each measures and how it got there.\n",
    ]
    for name, title, script in chosen:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        output, seconds = run(script)
        parts.append(f"### {title}\n\n`python {' '.join(script)}` ({seconds:.0f} s)\n\n{output}\n")
        print(output + "\n", flush=True)
    parts.append(END)
    if not args.no_write and not args.only:
        write_block("\n".join(parts))
        print("BENCHMARKS.md updated", file=sys.stderr)


if __name__ == "__main__":
    main()
