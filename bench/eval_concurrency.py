"""Evaluation concurrency: 50 questions, every metric (answers + LLM judge) against the simulated provider,
`--concurrency 16` vs `--sequential`, then concurrency 16 with 10% of requests answered 429.

    python bench/eval_concurrency.py [--questions 50] [--chat-ms 300] [--embed-ms 50] [--concurrency 16]

The questions are the bundled sample set (`examples/eval/questions.jsonl`) repeated with a suffix to reach
`--questions`; the corpus is `examples/corpus/`. Each question costs one rewrite chat and one answer chat, then
the judge: statements -> verdicts (faithfulness), generated questions (answer relevancy), one call per context
(context precision, 5 contexts), attribution (context recall); plus embedding requests for the query, answer
relevancy and semantic similarity. `evaluate_async(concurrency=1)` is what `mini eval run --sequential` runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from typing import Any

try:  # `python bench/eval_concurrency.py`; `python -m bench.eval_concurrency` finds bench._common
    from _common import REPO, machine, parser, run, sim_rag, table
except ModuleNotFoundError:
    from bench._common import REPO, machine, parser, run, sim_rag, table

MAX_RETRIES = 5


def questions(n: int) -> list[dict[str, Any]]:
    lines = (REPO / "examples" / "eval" / "questions.jsonl").read_text().splitlines()
    base = [json.loads(line) for line in lines if line.strip()]
    out = []
    for i in range(n):
        item = dict(base[i % len(base)])
        if i >= len(base):
            item["id"] = f"{item['id']}-{i}"
            item["question"] = f"{item['question']} ({i})"
        out.append(item)
    return out


async def run_level(rag: Any, sim: Any, items: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    from mini.eval import evaluate_async

    sim.reset()
    started = time.perf_counter()
    result = await evaluate_async(rag, items, concurrency=concurrency)
    wall = time.perf_counter() - started
    stats = sim.stats()
    scored = {name: s.n for name, s in result.summary.items()}
    return {
        "wall": wall,
        "failed": len(result.failed_rows),
        "min_n": min(scored.values()),
        "chats": stats["chat"]["responses_ok"],
        "rate_limited": stats["chat"]["rate_limited"] + stats["embeddings"]["rate_limited"],
        "peak": stats["chat"]["peak_in_flight"],
        "faithfulness": result.summary["faithfulness"].mean,
    }


async def main_async(args: argparse.Namespace) -> str:
    from mini.testing.sim import SimServer

    items = questions(args.questions)
    with SimServer(chat_ms=0, embed_ms=0, retry_after=0.5) as sim, tempfile.TemporaryDirectory() as tmp:
        rag = await sim_rag(sim, tmp, llm={"max_retries": MAX_RETRIES})
        await run_level(rag, sim, items[:16], 16)  # warm-up: connection pool, table handles
        sim.configure(chat_ms=args.chat_ms, embed_ms=args.embed_ms)
        levels = [("--sequential", 1, 0.0), (f"--concurrency {args.concurrency}", args.concurrency, 0.0)]
        if args.rate_limit_fraction > 0:
            label = f"--concurrency {args.concurrency}, {args.rate_limit_fraction:.0%} 429s"
            levels.append((label, args.concurrency, args.rate_limit_fraction))
        results = []
        for label, concurrency, fraction in levels:
            sim.configure(rate_limit_fraction=fraction)
            results.append((label, await run_level(rag, sim, items, concurrency)))
        await rag.aclose()
    sequential = results[0][1]["wall"]
    rows = [
        f"| {label} | {r['wall']:.1f} | **{sequential / r['wall']:.1f}x** | {r['chats']} | {r['rate_limited']} "
        f"| {r['peak']} | {r['failed']} | {r['min_n']}/{len(items)} | {r['faithfulness']:.3f} |"
        for label, r in results
    ]
    speedup = sequential / results[1][1]["wall"]
    header = (
        f"Simulated provider: chat {args.chat_ms:.0f} ms, embeddings {args.embed_ms:.0f} ms; {len(items)} questions, "
        "all 12 metrics (4 LLM-judged: 9 judge calls per question, plus rewrite and answer chats). "
        f"Retry-After on 429 0.5 s, max_retries {MAX_RETRIES}.\n"
        f"{machine()}\n"
        f"Command: `{' '.join(['python bench/eval_concurrency.py', *sys.argv[1:]])}`.\n\n"
    )
    columns = ["run", "wall s", "speedup vs sequential", "chat requests answered", "429s"]
    columns += ["peak chats in flight", "failed rows", "rows scored (min over metrics)", "faithfulness"]
    speedup_line = f"Speedup --concurrency {args.concurrency} vs --sequential: {speedup:.1f}x"
    return table(header, columns, "l" + "r" * 8, rows) + "\n\n" + speedup_line


def main() -> None:
    options = parser(__doc__, questions=50, sim=("chat_ms", "embed_ms"))
    options.add_argument("--concurrency", type=int, default=16)
    options.add_argument("--rate-limit-fraction", type=float, default=0.1, help="0 skips the 429 run")
    run(main_async, options)


if __name__ == "__main__":
    main()
