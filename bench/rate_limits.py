"""Rate limits and faults: how mini's limiter (adaptive cap, jittered retries) copes, measured vs ideal.

    python bench/rate_limits.py [--questions 64] [--chat-ms 250] [--embed-ms 50] [--cap 16] [--retry-after 0.5]

Scenarios, each against the simulated provider (its own process), the full pipeline (rewrite chat, embedding,
LanceDB search, answer chat) and no client-side concurrency limit other than mini's:
1. provider capped at `--cap` requests in flight, 429 + Retry-After beyond it; adaptive cap on vs off;
2. 10% random 429 + 2% 500 (Retry-After 1 s), 200 questions;
3. wrong API key: time to the AuthenticationError and requests sent;
4. micro-batching: 64 concurrent `embed_query_async` -> embeddings requests;
5. recovery: after learning the cap, the provider lifts it; how long a busy limiter takes back to the maximum.

"ideal" for scenario 1 is the provider's own capacity: ceil(2 x questions / cap) chat waves plus the
embedding requests, as if a perfect client kept exactly `cap` requests in flight from t=0.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import platform
import sys
import tempfile
import time
from typing import Any

try:  # `python bench/rate_limits.py`; `python -m bench.rate_limits` finds it as bench._common
    from _common import sim_rag
except ModuleNotFoundError:
    from bench._common import sim_rag

KEY = "sim"


async def make_rag(sim: Any, tmp: str) -> Any:
    return await sim_rag(sim, tmp, api_key=KEY, llm={"max_concurrency": 64})


def limiter() -> Any:
    from mini._limits import _limiters

    (only,) = _limiters.values()  # one endpoint + key: chat and embeddings share it
    return only


async def ask_all(rag: Any, questions: list[str]) -> tuple[float, int, int]:
    start = time.perf_counter()
    results = await asyncio.gather(*(rag.query_async(q) for q in questions), return_exceptions=True)
    wall = time.perf_counter() - start
    answered = sum(1 for r in results if not isinstance(r, BaseException) and r.citations)
    failed = sum(1 for r in results if isinstance(r, BaseException))
    return wall, answered, failed


async def capped(sim: Any, args: argparse.Namespace, questions: list[str], adaptive: bool) -> str:
    from mini._limits import AdaptiveConfig, reset_limiters
    from mini.testing.sim import max_in_window

    reset_limiters()
    with tempfile.TemporaryDirectory() as tmp:
        rag = await make_rag(sim, tmp)
        await asyncio.gather(*(rag.query_async(q) for q in questions[:8]))  # warm connections, no cap yet
        limiter().adaptive = AdaptiveConfig(enabled=adaptive)
        sim.configure(
            chat_ms=args.chat_ms, embed_ms=args.embed_ms, max_in_flight=args.cap, retry_after=args.retry_after
        )
        sim.reset()
        wall, answered, failed = await ask_all(rag, questions)
        stats, arrivals = sim.stats(), sim.arrivals()
        await rag.aclose()
        sim.configure(max_in_flight=0, chat_ms=0, embed_ms=0)
    embeds = stats["embeddings"]["responses_ok"]
    ideal = (
        math.ceil(2 * len(questions) / args.cap) * args.chat_ms + embeds * args.embed_ms / args.cap
    ) / 1000
    retried = [t for t, _, _, retry in arrivals if retry > 0]
    return (
        f"| capped at {args.cap}, adaptive {'on' if adaptive else 'off'} | {answered}/{len(questions)} "
        f"({failed} failed) | {stats['total']['rate_limited']} | {wall:.2f} | {ideal:.2f} | **{wall / ideal:.2f}** "
        f"| {max_in_window(retried, 0.05) if retried else 0} | {limiter().cap} |"
    )


async def random_faults(sim: Any, args: argparse.Namespace) -> str:
    from mini._limits import reset_limiters

    reset_limiters()
    questions = [f"When is glass collected for recycling? ({i})" for i in range(200)]
    with tempfile.TemporaryDirectory() as tmp:
        rag = await make_rag(sim, tmp)
        sim.configure(
            chat_ms=args.chat_ms,
            embed_ms=args.embed_ms,
            rate_limit_fraction=0.10,
            error_fraction=0.02,
            retry_after=1,
        )
        sim.reset()
        wall, answered, failed = await ask_all(rag, questions)
        stats = sim.stats()["total"]
        cap = limiter().cap
        await rag.aclose()
        sim.configure(rate_limit_fraction=0, error_fraction=0, chat_ms=0, embed_ms=0)
    return (
        f"| 10% 429 + 2% 500, 200 questions | {answered}/200 ({failed} failed) | {stats['rate_limited']} x 429, "
        f"{stats['errors']} x 500 | {wall:.2f} | {stats['retried']} retried requests; cap ended at {cap} |"
    )


async def wrong_key(sim: Any) -> str:
    from mini._limits import reset_limiters
    from mini.errors import AuthenticationError

    reset_limiters()
    with tempfile.TemporaryDirectory() as tmp:
        rag = await make_rag(sim, tmp)
        sim.configure(api_key="the-right-key")
        sim.reset()
        start = time.perf_counter()
        try:
            await rag.query_async("How much is the 2025 library budget?")
            outcome = "answered (wrong!)"
        except AuthenticationError as exc:
            outcome = type(exc).__name__
        elapsed = time.perf_counter() - start
        requests = sim.stats()["total"]["requests"]
        sim.configure(api_key="")
        await rag.aclose()
    return f"| wrong API key | {outcome} | {requests} request(s) | {elapsed * 1000:.0f} ms |"


async def micro_batching(sim: Any, args: argparse.Namespace) -> str:
    from mini import EmbeddingModel
    from mini._limits import reset_limiters

    reset_limiters()
    sim.configure(embed_ms=args.embed_ms)
    rows = []
    for window in (2.0, 0.0):
        model = EmbeddingModel(
            "openai:sim-embed", base_url=sim.base_url, api_key=KEY, dimension=384, batch_window_ms=window
        )
        sim.reset()
        start = time.perf_counter()
        await asyncio.gather(*(model.embed_query_async(f"question {i}") for i in range(64)))
        wall = time.perf_counter() - start
        rows.append(
            f"| 64 concurrent embed_query_async, window {window:g} ms | {sim.stats()['embeddings']['requests']} "
            f"requests | {wall * 1000:.0f} ms |"
        )
        await model.aclose()
    sim.configure(embed_ms=0)
    return "\n".join(rows)


async def recovery(sim: Any, args: argparse.Namespace, questions: list[str]) -> str:
    """Learn the cap, lift it, then keep the limiter busy (10x the questions at once) and watch it grow."""
    from mini._limits import AdaptiveConfig, reset_limiters

    reset_limiters()
    with tempfile.TemporaryDirectory() as tmp:
        rag = await make_rag(sim, tmp)
        limiter().adaptive = AdaptiveConfig(hold_seconds=1.0)
        sim.configure(
            chat_ms=args.chat_ms, embed_ms=args.embed_ms, max_in_flight=args.cap, retry_after=args.retry_after
        )
        await ask_all(rag, questions)
        learnt = limiter().cap
        sim.configure(max_in_flight=0)  # the provider lifts its cap
        sim.reset()
        many = [f"{q} [{i}]" for i in range(10) for q in questions]
        start = time.perf_counter()
        timeline: list[tuple[float, int]] = []
        reached: float | None = None

        async def watch() -> None:
            nonlocal reached
            while True:
                await asyncio.sleep(0.5)
                now = time.perf_counter() - start
                timeline.append((now, limiter().cap))
                if reached is None and limiter().cap >= limiter().max_in_flight:
                    reached = now

        watcher = asyncio.create_task(watch())
        wall, answered, _failed = await ask_all(rag, many)
        watcher.cancel()
        peak = sim.stats()["chat"]["peak_in_flight"]
        await rag.aclose()
        sim.configure(chat_ms=0, embed_ms=0)
    samples = ", ".join(f"{t:.0f}s:{cap}" for t, cap in timeline[1::4])
    return (
        f"Recovery (hold 1 s): cap learnt {learnt}; the provider lifts its cap and {len(many)} questions are asked "
        f"at once: back at {limiter().max_in_flight} after "
        f"{'never' if reached is None else f'{reached:.1f} s'} of {wall:.1f} s "
        f"({answered}/{len(many)} answered, provider peak in flight {peak}); cap over time: {samples}."
    )


async def main_async(args: argparse.Namespace) -> str:
    from mini.testing.sim import SimServer

    questions = [f"How much is the 2025 library budget? ({i})" for i in range(args.questions)]
    with SimServer(chat_ms=0, embed_ms=0) as sim:
        capped_rows = [await capped(sim, args, questions, adaptive) for adaptive in (True, False)]
        faults = await random_faults(sim, args)
        key = await wrong_key(sim)
        batching = await micro_batching(sim, args)
        recovered = await recovery(sim, args, questions)
    machine = (
        f"Machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
        f"{sys.platform}; simulated chat {args.chat_ms} ms, embeddings {args.embed_ms} ms, "
        f"Retry-After {args.retry_after} s."
    )
    return "\n".join(
        [
            machine,
            "",
            "| scenario | answered | 429s | wall s | ideal s | wall/ideal | max retries in 50 ms | cap learnt |",
            "|---|---|---|---|---|---|---|---|",
            *capped_rows,
            "",
            "| scenario | answered | faults | wall s | notes |",
            "|---|---|---|---|---|",
            faults,
            "",
            "| scenario | outcome | requests | time |",
            "|---|---|---|---|",
            key,
            "",
            "| micro-batching | embeddings requests | wall |",
            "|---|---|---|",
            batching,
            "",
            recovered,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--chat-ms", type=float, default=250)
    parser.add_argument("--embed-ms", type=float, default=50)
    parser.add_argument("--cap", type=int, default=16)
    parser.add_argument("--retry-after", type=float, default=0.5)
    print(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
