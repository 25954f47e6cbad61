"""Batch-file mode: `mini query --file` with 10 questions at --concurrency 1 vs 3 (and 10), as a user runs it.

    python bench/batch_file.py [--chat-ms 300] [--token-ms 5] [--embed-ms 50] [--levels 1,3,10]

Each run is the real command in its own process against the simulated provider (rewrite + hybrid retrieval
+ answer per question). "batch s" is the time the command reports for answering (from the first question to
the last answer); "command s" also counts interpreter start-up and imports, the same for every level.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:  # `python bench/batch_file.py`; `python -m bench.batch_file` finds it as bench._common
    from _common import REPO, int_list, machine, parser
except ModuleNotFoundError:
    from bench._common import REPO, int_list, machine, parser

MINI = Path(sys.executable).with_name("mini")
_REPORTED = re.compile(r"(\d+) answered, (\d+) failed in ([\d.]+) s")


def mini(env: dict[str, str], *args: str, cwd: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.perf_counter()
    done = subprocess.run([str(MINI), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    return done, time.perf_counter() - started


def main() -> None:
    from mini.testing.sim import SimServer

    options = parser(__doc__, sim=("chat_ms", "token_ms", "embed_ms"))
    options.add_argument("--levels", type=int_list, default=[1, 3, 10])
    args = options.parse_args()
    questions = REPO / "examples" / "questions.txt"
    model = ["--embedding-model", "openai:sim-embed"]
    rows, batch_s = [], {}
    with SimServer(chat_ms=0, embed_ms=0) as sim, tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "MINI_"))}
        env |= {"OPENAI_API_KEY": "sim", "OPENAI_BASE_URL": sim.base_url, "MINI_URI": tmp}
        ingest, _ = mini(env, "ingest", str(REPO / "examples" / "corpus"), *model, cwd=tmp)
        assert ingest.returncode == 0, ingest.stderr
        sim.configure(chat_ms=args.chat_ms, embed_ms=args.embed_ms, token_ms=args.token_ms)
        for level in args.levels:
            sim.reset()
            query = [
                "query",
                "--file",
                str(questions),
                "--concurrency",
                str(level),
                "--llm",
                "openai:sim-chat",
            ]
            done, command_s = mini(env, *query, *model, "--json", cwd=tmp)
            reported = _REPORTED.search(done.stderr)
            assert done.returncode == 0 and reported, done.stderr
            answered, failed, seconds = int(reported[1]), int(reported[2]), float(reported[3])
            batch_s[level] = seconds
            order = [json.loads(line)["index"] for line in done.stdout.splitlines()]
            in_order = order == list(range(len(order)))
            rows.append(
                f"| {level} | {seconds:.2f} | {batch_s[args.levels[0]] / seconds:.2f}x | {command_s:.2f} | "
                f"{answered}/{answered + failed} | {sim.stats()['chat']['peak_in_flight']} | {in_order} |"
            )
    print(
        f"`mini query --file examples/questions.txt` (10 questions), simulated chat {args.chat_ms} ms + "
        f"{args.token_ms} ms/token, embeddings {args.embed_ms} ms; each level a fresh process.\n"
        f"{machine(cores=False)}\n\n"
        f"| --concurrency | batch s | speed-up vs {args.levels[0]} | command s | answered | peak chats in flight "
        "| printed in input order |\n|---:|---:|---:|---:|---:|---:|---|\n" + "\n".join(rows)
    )


if __name__ == "__main__":
    main()
