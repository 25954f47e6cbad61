"""Scale of one process: 2,048 questions at concurrency 64 up to 1,024, measured vs ideal, CPU, loop lag, errors.

    python bench/scale_process.py [--questions 2048] [--levels 64,256,512,1024] [--mode dense]
                                  [--llm-concurrency 1024] [--chat-ms 300] [--embed-ms 50] ...

Issue 21, item 4: at c=1,024 measured/ideal at most 1.3, client CPU at most 2 ms per question (dense),
event-loop lag p99 under 20 ms, no errors. The ideal is `bench/query_concurrency.py`'s (c pipelines never
idle, each question's critical path = rewrite chat + query embedding + answer chat, read from the responses'
usage). Each level is one `query_batch_async` call with a `LoopLagProbe` (1 ms ticker; "own" lag discounts
what the whole machine stalled and the loop thread's wait for a CPU). CPU columns: the whole client process
(every thread: LanceDB's Rust pool, worker threads), its event-loop thread alone, and the simulator's process
(it runs on the same 2 cores: when it needs a core for itself, the client cannot have it).

The provider cap (`max_concurrency` of the chat model and of the embedding model: they share one limiter per
endpoint and key) is set to the highest level (`--llm-concurrency`), as a user running 1,024 questions at once
against a provider that allows it would: the default (64) is a provider bound, and at c=1,024 the questions
would queue behind it, measuring the bound rather than the client.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import tempfile
import time
from collections import Counter
from typing import Any

try:  # `python bench/scale_process.py`; `python -m bench.scale_process` finds bench._common
    from _common import REPO, int_list, machine, parser, run, sample_questions, table
    from query_concurrency import critical_path_s
except ModuleNotFoundError:
    from bench._common import REPO, int_list, machine, parser, run, sample_questions, table
    from bench.query_concurrency import critical_path_s

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of another process (Linux /proc), e.g. the simulator's."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


async def probe_cpu_per_s() -> float:
    """The loop-lag probe's own CPU seconds per second of wall on the loop thread (its 1 ms ticker), measured
    alone, to take out of the CPU columns."""
    from mini.testing.looplag import LoopLagProbe

    async with LoopLagProbe(controls=False):
        cpu, start = time.thread_time(), time.perf_counter()
        await asyncio.sleep(1.0)
        return (time.thread_time() - cpu) / (time.perf_counter() - start)


async def run_level(
    rag: Any, sim: Any, questions: list[str], level: int, args: argparse.Namespace, probe_cost: float
) -> dict:
    from mini.testing.looplag import LoopLagProbe, _runqueue_wait, own_stalls

    sim.reset()
    sim_cpu = process_cpu_s(sim.pid)
    async with LoopLagProbe() as probe:
        cpu, loop_cpu, waited = time.process_time(), time.thread_time(), _runqueue_wait()
        start = time.perf_counter()
        results = await rag.query_batch_async(questions, concurrency=level)
        wall = time.perf_counter() - start
        cpu, loop_cpu = time.process_time() - cpu, time.thread_time() - loop_cpu
        cpu, loop_cpu = cpu - probe_cost * wall, loop_cpu - probe_cost * wall
        waited = _runqueue_wait() - waited
    sim_cpu = process_cpu_s(sim.pid) - sim_cpu
    answered = [r.response for r in results if r.ok]
    errors = Counter(type(r.error).__name__ for r in results if not r.ok)
    paths = [critical_path_s(response, args) for response in answered] or [0.0]
    # Failed questions have no usage to read: count them at the mean path, so errors cannot shrink the ideal.
    paths += [statistics.fmean(paths)] * (len(questions) - len(answered))
    lags = [lag * 1000 for lag in own_stalls(probe.ticks, probe.control_stalls, probe.interval, probe.waits)]
    return {
        "wall": wall,
        "ideal": max(max(paths), sum(paths) / level),
        "mean_path": statistics.fmean(paths),
        "loop_cpu_s": loop_cpu,
        "waited_s": waited,
        "cpu_ms": cpu / len(questions) * 1000,
        "loop_cpu_ms": loop_cpu / len(questions) * 1000,
        "sim_cpu_ms": sim_cpu / len(questions) * 1000,
        "lag_p99": percentile(lags, 0.99),
        "lag_max": max(lags, default=0.0),
        "raw_p99": percentile([lag * 1000 for _, lag in probe.ticks], 0.99),
        "gc_max": max(probe.gc_pauses_ms, default=0.0),
        "gc_s": sum(probe.gc_pauses_ms) / 1000,
        "peak_chats": sim.stats()["chat"]["peak_in_flight"],
        "errors": errors,
        "cited": sum(bool(r.citations) for r in answered),
    }


def row(level: int, m: dict, questions: int) -> str:
    errors = ", ".join(f"{n} {name}" for name, n in m["errors"].most_common()) or "0"
    return (
        f"| {level} | {m['wall']:.2f} | {m['ideal']:.2f} | **{m['wall'] / m['ideal']:.2f}** "
        f"| {m['loop_cpu_s'] / m['ideal']:.2f} | {m['waited_s']:.2f} "
        f"| {m['cpu_ms']:.2f} | {m['loop_cpu_ms']:.2f} | {m['sim_cpu_ms']:.2f} "
        f"| {m['lag_p99']:.1f} | {m['lag_max']:.1f} | {m['raw_p99']:.1f} | {m['gc_s']:.2f} | {m['gc_max']:.0f} "
        f"| {m['peak_chats']} | {errors} | {m['cited']}/{questions} |"
    )


async def scaled_rag(sim: Any, tmp: str, args: argparse.Namespace) -> Any:
    """`sim_rag`'s RAG with the provider cap raised on both models: chat and embeddings share one limiter per
    endpoint and key, at the lowest cap either asked for, so the embedder's default 64 would cap chats too."""
    from mini import AgenticRAG, EmbeddingModel, LLMConfig, RetrievalConfig, VectorStore

    rag = AgenticRAG(
        VectorStore(tmp, collection_name="bench"),
        EmbeddingModel(
            "openai:sim-embed",
            base_url=sim.base_url,
            api_key="sim",
            dimension=384,
            max_concurrency=args.llm_concurrency,
        ),
        llm_config=LLMConfig(
            model="openai:sim-chat",
            base_url=sim.base_url,
            api_key="sim",
            max_concurrency=args.llm_concurrency,
        ),
        retrieval_config=RetrievalConfig(num_query_variants=args.variants, retrieval_mode=args.mode),
    )
    report = await rag.index_documents_async([REPO / "examples" / "corpus"])
    assert report.ok, report.failures
    return rag


async def main_async(args: argparse.Namespace) -> str:
    from mini.testing.sim import SimServer

    base = sample_questions()
    questions = [base[i % len(base)] + ("" if i < len(base) else f" ({i})") for i in range(args.questions)]
    rows = []
    with SimServer(chat_ms=0, embed_ms=0) as sim, tempfile.TemporaryDirectory() as tmp:
        rag = await scaled_rag(sim, tmp, args)
        # Warm-up at the widest level: a long-running process has its connection pool and table open.
        await rag.query_batch_async(questions, concurrency=max(args.levels))
        if args.gc_threshold:  # what a long-running service may choose; the library leaves GC alone
            gc.set_threshold(args.gc_threshold, 10, 10)
        sim.configure(chat_ms=args.chat_ms, embed_ms=args.embed_ms, token_ms=args.token_ms)
        probe_cost = await probe_cpu_per_s()
        mean_path = 0.0
        for level in args.levels:
            measured = await run_level(rag, sim, questions, level, args, probe_cost)
            mean_path = measured["mean_path"]
            rows.append(row(level, measured, len(questions)))
        await rag.aclose()
    gc_note = (
        f"; `gc.set_threshold({args.gc_threshold}, 10, 10)` after the warm-up" if args.gc_threshold else ""
    )
    header = (
        f"Simulated provider: chat {args.chat_ms:g} ms + {args.token_ms:g} ms per completion token, embeddings "
        f"{args.embed_ms:g} ms; {len(questions)} questions through `query_batch_async` at each concurrency, "
        f"{args.mode} retrieval, {args.variants} query rewrites (mean critical path {mean_path * 1000:.0f} ms); "
        f"chat and embedding `max_concurrency={args.llm_concurrency}`. CPU in ms per question: the client process, its "
        f"event-loop thread, the simulator's process. \"loop CPU/ideal\": the event-loop thread's CPU seconds over "
        f"the ideal wall time, the lowest measured/ideal one loop can reach (above 1 the batch is CPU-bound); "
        f'"loop waited s": how long that thread was runnable but had no core (other processes on the machine). '
        f"CPU columns leave out the probe's own ticker ({probe_cost * 1000:.0f} ms of CPU per second, measured "
        f"alone in this run). Loop lag: the 1 ms ticker's own lag (p99, max), the raw p99; GC: the collections' "
        f"total and longest pause (the probe freezes what existed before each level: `gc.freeze()`)"
        f"{gc_note}.\n{machine()}\n\n"
    )
    columns = ["concurrency", "measured s", "ideal s", "measured/ideal", "loop CPU/ideal", "loop waited s"]
    columns += ["client CPU", "loop thread CPU"]
    columns += ["simulator CPU", "lag p99 ms", "lag max ms", "raw lag p99 ms", "GC s", "GC max ms"]
    columns += ["peak chats"]
    columns += ["errors", "answers with citations"]
    return table(header, columns, "r" * len(columns), rows)


def main() -> None:
    options = parser(__doc__, questions=2048, sim=("chat_ms", "token_ms", "embed_ms"))
    options.add_argument("--levels", type=int_list, default=[64, 256, 512, 1024])
    options.add_argument("--variants", type=int, default=2, help="query rewrites per question")
    options.add_argument("--mode", choices=["dense", "keyword", "hybrid"], default="dense")
    options.add_argument(
        "--llm-concurrency",
        type=int,
        default=1024,
        help="max_concurrency of the chat and the embedding model",
    )
    options.add_argument(
        "--gc-threshold",
        type=int,
        default=0,
        help="after the warm-up, gc.set_threshold(N, 10, 10) as an application may (default: Python's 700)",
    )
    run(main_async, options)


if __name__ == "__main__":
    main()
