"""Concurrent ingestion: two `mini ingest` processes on the same files into the same store, at once.

    python bench/concurrent_ingest.py [--files 3000] [--processes 2] [--write]

Issue 18's acceptance check, with the offline defaults (local embeddings, embedded LanceDB): generates `--files`
small text files (one chunk each) in a temporary directory, starts `--processes` `mini ingest DIR --json` at
the same moment on them and one store, waits for all, then counts the stored rows and the ids stored more than
once, and re-runs one ingestion to show it finds every file unchanged. Expected: exactly one row per file, no
duplicate id, every process exit 0, and the files added once in total (the others report them unchanged:
skipped). Before the store's writer lock, 3,000 files gave 241 duplicate ids and one process failed.
`--write` puts the result in BENCHMARKS.md (its own section, between markers).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MINI = Path(sys.executable).with_name("mini")
BEGIN, END = "<!-- concurrent_ingest:begin -->", "<!-- concurrent_ingest:end -->"


def write_files(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        (folder / f"note{i:05d}.txt").write_text(
            f"Note {i}: ferry {i % 97} leaves pier {i % 13} at {i % 24}:{i % 60:02d} on weekday {i % 7}.\n"
        )


def ingest_at_once(corpus: Path, store: Path, processes: int) -> list[tuple[int, dict[str, Any], float]]:
    """(exit code, JSON report, wall seconds) of each process, all started together."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "MINI_"))}
    command = [str(MINI), "ingest", str(corpus), "--uri", str(store), "--json"]
    started = time.perf_counter()
    running = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(processes)
    ]
    results = []
    for process in running:
        stdout, stderr = process.communicate(timeout=3600)
        wall = time.perf_counter() - started
        if process.returncode != 0:
            print(stderr[-4000:], file=sys.stderr)
        report = json.loads(stdout) if stdout.strip().startswith("{") else {}
        results.append((process.returncode, report, wall))
    return results


def stored_ids(store: Path) -> collections.Counter[str]:
    from mini import VectorStore

    vectors = VectorStore(str(store), collection_name="docs")
    try:
        return collections.Counter(row.id for row in vectors.get())
    finally:
        vectors.close()


def measure(args: argparse.Namespace) -> str:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        corpus, store = tmp / "docs", tmp / "store"
        write_files(corpus, args.files)
        results = ingest_at_once(corpus, store, args.processes)
        ids = stored_ids(store)
        rerun = ingest_at_once(corpus, store, 1)[0]
    duplicates = sum(1 for n in ids.values() if n > 1)
    lines = [
        f"## Concurrent ingestion: {args.processes} `mini ingest` of the same {args.files:,} files (issue 18)",
        "",
        f"    python bench/concurrent_ingest.py --files {args.files} --processes {args.processes}",
        "",
        f"{args.files:,} one-chunk text files; {args.processes} `mini ingest DIR --json` processes started together "
        "on one LanceDB directory, offline defaults (local all-MiniLM-L6-v2 embeddings); then one re-run.",
        "",
        "| run | exit | added | skipped (unchanged) | updated | failed | chunks embedded | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    runs = [(f"process {i + 1}", r) for i, r in enumerate(results)] + [("re-run", rerun)]
    for label, (code, report, wall) in runs:
        counts = [
            report.get(k, "-") for k in ("files_added", "files_skipped", "files_updated", "files_failed")
        ]
        embedded = report.get("chunks_embedded", "-")
        lines.append(
            f"| {label} | {code} | " + " | ".join(map(str, counts)) + f" | {embedded} | {wall:.1f} |"
        )
    total_added = sum(r.get("files_added", 0) for _, r, _ in results)
    verdict = (
        "pass"
        if len(ids) == args.files
        and sum(ids.values()) == args.files
        and duplicates == 0
        and all(code == 0 for code, _, _ in [*results, rerun])
        and total_added == args.files
        and rerun[1].get("files_skipped") == args.files
        else "FAIL"
    )
    lines += [
        "",
        f"Stored: **{sum(ids.values()):,} rows, {len(ids):,} distinct ids, {duplicates} duplicate ids**; files "
        f"added in total: {total_added:,} ({verdict}: expected {args.files:,} rows, 0 duplicates, every exit 0, "
        "each file added once).",
        "",
        "Each commit holds the store's writer lock (a `flock` on `<store>/docs.lance.lock`, see docs/security.md),",
        "and first checks which of its files another writer stored meanwhile: those are reported unchanged",
        "(skipped) instead of added again. Both processes still embed every file: the lock is taken per commit,",
        "not per run, so neither waits for the other's whole ingestion.",
        "",
        "Before the lock (the same command on the code before issue 18, measured once): 3,217 rows, 217 duplicate",
        "ids, and both processes reported all 3,000 files added; the issue's own run also had one process fail",
        'with "LanceDB optimize failed: Retryable commit conflict". Wall time was about the same (33-36 s).',
    ]
    return "\n".join(lines)


def write_section(markdown: str) -> None:
    path = REPO / "BENCHMARKS.md"
    text = path.read_text()
    block = f"{BEGIN}\n{markdown}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--files", type=int, default=3000)
    options.add_argument("--processes", type=int, default=2)
    options.add_argument("--write", action="store_true", help="Put the result in BENCHMARKS.md.")
    args = options.parse_args()
    markdown = measure(args)
    print(markdown)
    if args.write:
        write_section(markdown)


if __name__ == "__main__":
    main()
