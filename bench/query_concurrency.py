"""Query concurrency: 64 questions against the simulated provider at concurrency 1, 8, 32, 64, measured vs ideal.

    python bench/query_concurrency.py [--questions 64] [--chat-ms 300] [--token-ms 5] [--embed-ms 50]
                                      [--levels 1,8,32,64] [--mode dense|keyword|hybrid] [--no-keyword-cache]

A question's critical path is the simulated waits it cannot avoid: rewrite chat + query embedding + answer
chat, each chat chat-ms + token-ms x its completion tokens (read from the response's usage). The ideal wall
time of a level is max(longest critical path, sum of critical paths / c): c pipelines never idle. measured/ideal
near 1.0 means the client adds nothing but the provider's own latency; the search itself (embedded LanceDB)
is real work included in "measured". Client CPU is the process CPU time per question (the simulator runs in
its own process and is not counted).

The keyword leg ranks from per-word BM25 scores cached per table version (`mini.stores.lancedb.keyword`),
filled once a version has stood 1 s (the warm-up waits for that and runs again, in every mode); with a
keyword leg, a last row runs the highest level again right after that cache is emptied, as after a write to
the store (`--mode dense` vs `hybrid` gives the leg's cost; `--no-keyword-cache`: one LanceDB query each).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
import time

try:  # `python bench/query_concurrency.py`; `python -m bench.query_concurrency` finds bench._common
    from _common import int_list, machine, parser, run, sample_questions, sim_rag, table
except ModuleNotFoundError:
    from bench._common import int_list, machine, parser, run, sample_questions, sim_rag, table


async def run_level(
    rag: object, questions: list[str], concurrency: int, args: argparse.Namespace
) -> tuple[float, float, int, list[float]]:
    """Wall s, client CPU s, answers with citations, and each question's critical path in s."""
    cpu = time.process_time()
    start = time.perf_counter()
    results = await rag.query_batch_async(questions, concurrency=concurrency)  # type: ignore[attr-defined]
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu
    failed = [r.error for r in results if not r.ok]
    assert not failed, failed[:3]
    paths = [critical_path_s(r.response, args) for r in results]
    return wall, cpu, sum(bool(r.response.citations) for r in results), paths


def critical_path_s(response: object, args: argparse.Namespace) -> float:
    tokens = response.metadata["usage"]["completion_tokens"]  # type: ignore[attr-defined]
    return (2 * args.chat_ms + args.token_ms * tokens + args.embed_ms) / 1000.0


async def main_async(args: argparse.Namespace) -> str:
    from mini import RetrievalConfig
    from mini.testing.sim import SimServer

    base = sample_questions()
    questions = [base[i % len(base)] + ("" if i < len(base) else f" ({i})") for i in range(args.questions)]
    rows = []
    with SimServer(chat_ms=0, embed_ms=0) as sim, tempfile.TemporaryDirectory() as tmp:
        rag = await sim_rag(
            sim,
            tmp,
            llm={"max_concurrency": 256},
            retrieval_config=RetrievalConfig(num_query_variants=args.variants, retrieval_mode=args.mode),
        )
        # Warm-up at full width: a long-running process has its connection pool and table handles open.
        await asyncio.gather(*(rag.query_async(q) for q in questions))
        if args.no_keyword_cache:  # what every question paid before: one LanceDB full-text query each
            rag.vector_store.backend._keyword_scores.settle = math.inf
        # Twice, in every mode alike: the keyword cache is filled once the store has stood SETTLE_S unchanged.
        from mini.stores.lancedb.keyword import SETTLE_S

        await asyncio.sleep(SETTLE_S)
        await asyncio.gather(*(rag.query_async(q) for q in questions))
        sim.configure(chat_ms=args.chat_ms, embed_ms=args.embed_ms, token_ms=args.token_ms)
        mean_path = 0.0
        for level in args.levels:
            sim.reset()
            wall, cpu, cited, paths = await run_level(rag, questions, level, args)
            ideal = max(max(paths), sum(paths) / level)
            mean_path = sum(paths) / len(paths)
            stats = sim.stats()
            rows.append(
                f"| {level} | {wall:.2f} | {ideal:.2f} | **{wall / ideal:.2f}** | {cpu / len(questions) * 1000:.1f} "
                f"| {stats['chat']['peak_in_flight']} | {cited}/{len(questions)} |"
            )
        if args.mode != "dense" and not args.no_keyword_cache:
            rag.vector_store.backend._keyword_scores.forget()  # as after a write: every word fetched again
            sim.reset()
            level = args.levels[-1]
            wall, cpu, cited, paths = await run_level(rag, questions, level, args)
            ideal = max(max(paths), sum(paths) / level)
            rows.append(
                f"| {level}, keyword cache emptied | {wall:.2f} | {ideal:.2f} | **{wall / ideal:.2f}** "
                f"| {cpu / len(questions) * 1000:.1f} | {sim.stats()['chat']['peak_in_flight']} "
                f"| {cited}/{len(questions)} |"
            )
        await rag.aclose()
    header = (
        f"Simulated provider: chat {args.chat_ms} ms + {args.token_ms} ms per completion token, embeddings "
        f"{args.embed_ms} ms; {len(questions)} questions through `query_batch_async`, each = rewrite chat + one "
        f"embedding request for the question and its {args.variants} rewrites + hybrid retrieval (one multi-vector "
        f"LanceDB search and one BM25 query over all variants, at once) + answer chat (mean critical path "
        f"{mean_path * 1000:.0f} ms).\n"
        f"{machine()}\n\n"
    )
    columns = ["concurrency", "measured s", "ideal s", "measured/ideal", "client CPU ms/question"]
    columns += ["peak chats in flight", "answers with citations"]
    return table(header, columns, "r" * len(columns), rows)


def main() -> None:
    options = parser(__doc__, questions=64, sim=("chat_ms", "token_ms", "embed_ms"))
    options.add_argument("--variants", type=int, default=2, help="query rewrites per question")
    options.add_argument(
        "--mode", choices=["dense", "keyword", "hybrid"], default="hybrid", help="retrieval mode"
    )
    options.add_argument("--levels", type=int_list, default=[1, 8, 32, 64])
    options.add_argument(
        "--no-keyword-cache",
        action="store_true",
        help="one LanceDB query per question's keyword leg (before)",
    )
    run(main_async, options)


if __name__ == "__main__":
    main()
