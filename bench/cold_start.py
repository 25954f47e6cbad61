"""Cold start: `mini query --llm none "..."` in a fresh process on the demo store, and where its time goes.

    python bench/cold_start.py [--runs 5] [--compare-src DIR] [--no-write]

1. Builds the demo store (`mini ingest examples/corpus`, the bundled local model) in a temporary directory.
2. Runs `mini query --llm none QUESTION` --runs times in fresh processes (stdout to /dev/null) and reports
   the median wall time; with --compare-src (another checkout's src/, e.g. `git archive HEAD src | tar -x
   -C /tmp/before`) the two trees alternate run by run, so both medians come from the same minutes.
3. The breakdown: each phase of that command timed in a fresh process (medians of --runs), plus what the
   phases it no longer has cost (`import lancedb`, pandas), each in its own fresh process.
Writes the "Cold start (issue 21)" section of BENCHMARKS.md unless --no-write.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:  # `python bench/cold_start.py`; `python -m bench.cold_start` finds it as bench._common
    from _common import REPO, machine, write_section
except ModuleNotFoundError:
    from bench._common import REPO, machine, write_section

HEADING = "## Cold start (issue 21)"
QUESTION = "How much is the 2025 library budget?"
READING = """Reading it: `import lancedb` was most of the old cold start (main before issue 21 is the compared tree). The query path now opens the table and
searches through LanceDB's Rust extension alone (`mini.stores.lancedb.native`: ~10 ms to load, open and
search), and imports the `lancedb` package only for an operation that needs it (writes, index builds), in a
worker thread; `mini ingest` imports it up front as before. pandas is gone from the path too (pyarrow's
`to_numpy()`/`combine_chunks()` and `pa.array(ndarray)` import it; the store reads float columns from their
buffers). Finding the cached ONNX graph no longer imports `onnx`, and the CLI starts loading the model in a
background thread while it imports and opens the store (the phases above are timed one after the other, so
they add up to more than the command's wall time). The default model is the int8 variant (a smaller graph to
load, ~2x faster to run): the offline answer's own embedding of the retrieved chunks' sentences (its
"generate" stage) is most of the query. The float model's row shows the cold start with sentence-transformers'
exact vectors."""

# The query command's phases, in its order, timed in one fresh process (the store in the working directory).
_PHASES = r"""
import asyncio, json, sys, time
marks = [("start", time.perf_counter())]
def mark(name):
    marks.append((name, time.perf_counter()))
import mini.cli.main
mark("import mini + CLI (typer, rich, pydantic settings)")
from mini.cli.common import build_rag
rag = build_rag(llm="none")
mark("settings + AgenticRAG construction")
from mini.stores.lancedb import native
native.extension()
mark("load LanceDB's engine (native extension only)")
async def main():
    backend = rag.vector_store.backend
    await backend._open_handle()
    mark("open the table")
    import onnxruntime, tokenizers
    mark("import onnxruntime + tokenizers")
    await rag.embedding_model.embedder.warmup()
    mark("load the model (ONNX session + tokenizer)")
    response = await rag.query_async(sys.argv[1])
    mark("the query (embed, hybrid search, extractive answer)")
    return response
response = asyncio.run(main())
mark("event loop shutdown")
rows = [[name, (t - marks[i][1]) * 1000] for i, (name, t) in enumerate(marks[1:])]
stages = response.metadata.get("timings_ms", {})
rows += [["&nbsp;&nbsp;the query's own stage: " + name, ms] for name, ms in stages.items() if name != "total"]
print(json.dumps(rows))
"""

# What the query no longer imports, each alone in a fresh process: (setup, not counted; the import timed).
_IMPORTS = {
    "import lancedb (its Python layer; no longer on the query path)": ("", "import lancedb"),
    "&nbsp;&nbsp;of which lance_namespace (generated OpenAPI client)": (
        "import pyarrow",
        "import lance_namespace",
    ),
    "&nbsp;&nbsp;of which pandas (pyarrow.dataset imports it)": ("import pyarrow", "import pandas"),
}


def env_for(src: Path) -> dict[str, str]:
    # Bytecode caching on (PYTHONDONTWRITEBYTECODE dropped), as in an installed package: pip compiles .pyc
    # files on install, and compiling mini's ~80 modules from source would add ~0.1-0.2 s to every run.
    skip = ("OPENAI_", "MINI_", "LANGFUSE_", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env["PYTHONPATH"] = str(src)
    return env


def wall_of(command: list[str], *, cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr.decode()[-3000:]}")
    return elapsed


FLOAT = "local:all-MiniLM-L6-v2"  # the float model, equal to sentence-transformers' (the default is its int8 variant)


def query_command(*extra: str) -> list[str]:
    return [sys.executable, "-m", "mini.cli.main", "query", "--llm", "none", *extra, QUESTION]


def import_cost(statement: str, setup: str, env: dict[str, str], cwd: Path) -> float:
    """Seconds of `statement` after `setup` (its prerequisites, not counted), in a fresh process."""
    code = f"import time\n{setup}\nt = time.perf_counter()\n{statement}\nprint(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return float(done.stdout.strip())


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--runs", type=int, default=5)
    options.add_argument("--compare-src", type=Path, help="another tree's src/ to time the same way")
    options.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = options.parse_args()
    src = REPO / "src"
    env = env_for(src)
    with tempfile.TemporaryDirectory() as tmp_name:
        work = Path(tmp_name)
        ingest = [sys.executable, "-m", "mini.cli.main", "ingest", str(REPO / "examples" / "corpus")]
        wall_of(ingest, cwd=work, env=env)
        wall_of(query_command(), cwd=work, env=env)  # warms the ONNX graph cache and the page cache
        wall_of(query_command("--embedding-model", FLOAT), cwd=work, env=env)  # its graph, built once
        trees: list[tuple[str, dict[str, str], tuple[str, ...]]] = [
            ("this tree (default model: int8)", env, ()),
            (f"this tree, `--embedding-model {FLOAT}` (float)", env, ("--embedding-model", FLOAT)),
        ]
        if args.compare_src is not None:
            trees.append((f"--compare-src {args.compare_src}", env_for(args.compare_src.resolve()), ()))
        walls: dict[str, list[float]] = {name: [] for name, _, _ in trees}
        for _ in range(args.runs):
            for name, tree_env, extra in trees:  # alternating: all see the same load
                walls[name].append(wall_of(query_command(*extra), cwd=work, env=tree_env))
        python_start = [wall_of([sys.executable, "-c", "pass"], cwd=work, env=env) for _ in range(args.runs)]
        phases: dict[str, list[float]] = {}
        for _ in range(args.runs):
            done = subprocess.run(
                [sys.executable, "-c", _PHASES, QUESTION], cwd=work, env=env, capture_output=True, text=True
            )
            if done.returncode != 0:
                raise SystemExit(done.stderr[-3000:])
            for name, ms in json.loads(done.stdout.strip().splitlines()[-1]):
                phases.setdefault(name, []).append(ms)
        imports = {
            label: [import_cost(statement, setup, env, work) for _ in range(3)]
            for label, (setup, statement) in _IMPORTS.items()
        }
    section = render(args, walls, python_start, phases, imports)
    print(section)
    if not args.no_write:
        write_section(section, HEADING)
        print("BENCHMARKS.md updated", file=sys.stderr)


def render(
    args: argparse.Namespace,
    walls: dict[str, list[float]],
    python_start: list[float],
    phases: dict[str, list[float]],
    imports: dict[str, list[float]],
) -> str:
    command = "python bench/cold_start.py" + (f" --runs {args.runs}" if args.runs != 5 else "")
    if args.compare_src is not None:
        command += " --compare-src DIR"
    rows = [
        f"| {name} | {statistics.median(times):.2f} | {' '.join(f'{t:.2f}' for t in times)} |"
        for name, times in walls.items()
    ]
    lines = [
        HEADING,
        "",
        f"    {command}",
        "",
        f'`mini query --llm none "{QUESTION}"` on the demo store (examples/corpus, local model), each run a '
        f"fresh process; {machine()} Run of {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        "| code | median wall s | runs (s) |",
        "|---|---:|---:|",
        *rows,
    ]
    if args.compare_src is not None:
        mine, _, other = walls.values()
        ratio = statistics.median(other) / statistics.median(mine)
        lines += ["", f"The compared tree takes **{ratio:.1f}x** as long (medians, runs alternating)."]
    lines += [
        "",
        f"Where the time goes (medians of {args.runs} fresh processes, ms; the phases of the command in its "
        "order, then what it no longer pays):",
        "",
        "| phase | ms |",
        "|---|---:|",
        f"| interpreter start (`python -c pass`) | {statistics.median(python_start) * 1000:.0f} |",
        *(f"| {name} | {statistics.median(ms):.0f} |" for name, ms in phases.items()),
        *(f"| {label} | {statistics.median(s) * 1000:.0f} |" for label, s in imports.items()),
        "",
        READING,
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
