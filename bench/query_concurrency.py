"""Query concurrency: 64 questions against the simulated provider at concurrency 1, 8, 32, 64, measured vs ideal.

    python bench/query_concurrency.py [--questions 64] [--chat-ms 300] [--embed-ms 50] [--levels 1,8,32,64]

The ideal wall time of a level is ceil(questions / c) x one question's critical path, where the critical path
is the simulated waits a question cannot avoid: rewrite chat + query embedding + answer chat. measured/ideal
near 1.0 means the client adds nothing but the provider's own latency; the search itself (embedded LanceDB)
is real work included in "measured". Client CPU is the process CPU time per question (the simulator runs in
its own process and is not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


async def run_level(rag: object, questions: list[str], concurrency: int) -> tuple[float, float, int]:
    semaphore = asyncio.Semaphore(concurrency)

    async def one(question: str) -> bool:
        async with semaphore:
            response = await rag.query_async(question)  # type: ignore[attr-defined]
            return bool(response.citations)

    cpu = time.process_time()
    start = time.perf_counter()
    results = await asyncio.gather(*(one(q) for q in questions))
    wall = time.perf_counter() - start
    return wall, time.process_time() - cpu, sum(results)


async def main_async(args: argparse.Namespace) -> str:
    from mini import AgenticRAG, EmbeddingModel, LLMConfig, RetrievalConfig, VectorStore
    from mini.testing.sim_server import SimServer

    questions_file = (REPO / "examples" / "questions.txt").read_text().splitlines()
    base = [q for q in questions_file if q.strip()]
    questions = [base[i % len(base)] + ("" if i < len(base) else f" ({i})") for i in range(args.questions)]
    rows = []
    with SimServer(chat_ms=0, embed_ms=0) as sim, tempfile.TemporaryDirectory() as tmp:
        embedding = EmbeddingModel("openai:sim-embed", base_url=sim.base_url, api_key="sim", dimension=384)
        rag = AgenticRAG(
            VectorStore(tmp, collection_name="bench"),
            embedding,
            llm_config=LLMConfig(
                model="openai:sim-chat", base_url=sim.base_url, api_key="sim", max_concurrency=256
            ),
            retrieval_config=RetrievalConfig(num_query_variants=args.variants),
        )
        report = await rag.index_documents_async([REPO / "examples" / "corpus"])
        assert report.ok, report.failures
        # Warm-up at full width: a long-running process has its connection pool and table handles open.
        await asyncio.gather(*(rag.query_async(q) for q in questions))
        sim.configure(chat_ms=args.chat_ms, embed_ms=args.embed_ms)
        critical_path_s = (2 * args.chat_ms + args.embed_ms) / 1000.0
        for level in args.levels:
            sim.reset()
            wall, cpu, cited = await run_level(rag, questions, level)
            ideal = math.ceil(len(questions) / level) * critical_path_s
            stats = sim.stats()
            rows.append(
                f"| {level} | {wall:.2f} | {ideal:.2f} | **{wall / ideal:.2f}** | {cpu / len(questions) * 1000:.1f} "
                f"| {stats['chat']['peak_in_flight']} | {cited}/{len(questions)} |"
            )
        await rag.aclose()
    header = (
        f"Simulated provider: chat {args.chat_ms} ms, embeddings {args.embed_ms} ms; {len(questions)} questions, "
        f"each = rewrite chat + one embedding request for the question and its {args.variants} rewrites + "
        f"one multi-vector LanceDB search + answer chat "
        f"(critical path {critical_path_s * 1000:.0f} ms).\n"
        f"Machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
        f"{_cores()} cores.\n\n"
        "| concurrency | measured s | ideal s | measured/ideal | client CPU ms/question | peak chats in flight | answers with citations |\n"
        "|---:|---:|---:|---:|---:|---:|---:|"
    )
    return header + "\n" + "\n".join(rows)


def _cores() -> int:
    import os

    return os.cpu_count() or 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--chat-ms", type=float, default=300)
    parser.add_argument("--embed-ms", type=float, default=50)
    parser.add_argument("--variants", type=int, default=2, help="query rewrites per question")
    parser.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32, 64])
    args = parser.parse_args()
    print(asyncio.run(main_async(args)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
