"""What sharing the provider limits through Redis costs a query batch: in-process limiter vs Redis-backed.

    python bench/shared_limits.py [--questions 256] [--concurrency 64] [--rounds 2] [--no-write]

The same batch (`query_batch_async`, hybrid retrieval, simulated provider: chat 300 ms + 5 ms/token, embeddings
50 ms) with the provider limiter in this process, then with its counts in a local redis-server (Debian's, on a
free loopback port; what `MINI_REDIS_URL` selects): in-flight leases, the adaptive cap and the rpm/tpm budgets
go to Redis on every model call. Rounds alternate the two so machine drift hits both alike. Reported: wall
time against the batch's ideal, client CPU per question, and Redis requests per question (from its own counters:
scripts and plain commands sent, and in brackets every command it ran, those inside our Lua scripts included).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from typing import Any

try:  # `python bench/shared_limits.py`; `python -m bench.shared_limits` finds bench._common
    from _common import machine, run_writing, sample_questions, sim_rag, table
except ModuleNotFoundError:
    from bench._common import machine, run_writing, sample_questions, sim_rag, table

HEADING = "## Provider limits shared through Redis (issue 22)"
CHAT_MS, TOKEN_MS, EMBED_MS = 300, 5, 50


# Commands our Lua scripts run inside Redis (mini._limits_redis); Redis counts them like a client's.
_INSIDE_SCRIPTS = {"time", "zremrangebyscore", "hget", "hset", "zcard", "zadd", "zrange", "pexpire", "expire"}
_INSIDE_SCRIPTS |= {"get", "set"}


def _requests(url: str) -> tuple[int, int]:
    """(requests the clients sent: scripts and plain commands, commands Redis ran including inside scripts)."""
    import redis

    with redis.Redis.from_url(url, socket_timeout=5) as client:
        stats = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    total = sum(calls.values())
    return total - sum(n for name, n in calls.items() if name in _INSIDE_SCRIPTS), total


async def _one(sim: Any, questions: list[str], args: argparse.Namespace, redis_url: str | None) -> str:
    from mini import RetrievalConfig
    from mini._limits import reset_limiters, share_limits

    reset_limiters()
    share_limits(redis_url)  # before the models are built: they bind their limiters then
    sim.configure(chat_ms=0, embed_ms=0, token_ms=0)
    with tempfile.TemporaryDirectory() as tmp:
        rag = await sim_rag(sim, tmp, retrieval_config=RetrievalConfig(retrieval_mode="hybrid"))
        await rag.query_batch_async(questions[: args.concurrency], concurrency=args.concurrency)  # warm-up
        sim.configure(chat_ms=CHAT_MS, embed_ms=EMBED_MS, token_ms=TOKEN_MS)
        sim.reset()
        before = await asyncio.to_thread(_requests, redis_url) if redis_url else (0, 0)
        cpu, started = time.process_time(), time.perf_counter()
        results = await rag.query_batch_async(questions, concurrency=args.concurrency)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        after = await asyncio.to_thread(_requests, redis_url) if redis_url else (0, 0)
        await rag.aclose()
    failed = [r.error for r in results if not r.ok]
    assert not failed, failed[:3]
    paths = [
        (2 * CHAT_MS + TOKEN_MS * r.response.metadata["usage"]["completion_tokens"] + EMBED_MS) / 1000
        for r in results
    ]
    ideal = max(max(paths), sum(paths) / args.concurrency)
    stats = sim.stats()
    sent, ran = (after[0] - before[0], after[1] - before[1])
    per_question = f"{sent / len(questions):.1f} ({ran / len(questions):.1f})" if redis_url else "-"
    return (
        f"| {'Redis' if redis_url else 'in process'} | {wall:.2f} | {ideal:.2f} | **{wall / ideal:.2f}** "
        f"| {cpu / len(questions) * 1000:.2f} | {per_question} | {stats['total']['peak_in_flight']} "
        f"| {sum(bool(r.response.citations) for r in results)}/{len(questions)} |"
    )


async def _contended(url: str, calls: int, cap: int = 8, hold_s: float = 0.005) -> str:
    """Two limiters of one endpoint (two processes' worth) sharing `cap`, `calls` at once, each holding its slot
    `hold_s`: wall time against the ideal (calls x hold / cap) and acquire scripts per call (waiting costs
    polls: a local release wakes one local waiter; slots freed by the other process are found by polling)."""
    import uuid

    import redis

    from mini._limits import Limiter
    from mini._limits_redis import RedisLimits

    endpoint = f"http://bench-{uuid.uuid4().hex[:8]}/v1"
    a, b = (Limiter(endpoint, cap, shared=RedisLimits(url, endpoint)) for _ in range(2))

    async def call() -> int:
        await asyncio.sleep(hold_s)
        return 1

    with redis.Redis.from_url(url, socket_timeout=5) as client:
        client.config_resetstat()
    started = time.perf_counter()
    await asyncio.gather(*((a if i % 2 else b).call(call) for i in range(calls)))
    wall = time.perf_counter() - started
    with redis.Redis.from_url(url, socket_timeout=5) as client:
        acquires = int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
    ideal = calls * hold_s / cap
    return f"| {calls} | {cap} | {wall:.2f} | {ideal:.2f} | **{wall / ideal:.2f}** | {acquires / calls:.1f} |"


async def main_async(args: argparse.Namespace) -> str:
    from mini._limits import reset_limiters
    from mini.testing.services import RedisServer
    from mini.testing.sim import SimServer

    base = sample_questions()
    questions = [base[i % len(base)] + ("" if i < len(base) else f" ({i})") for i in range(args.questions)]
    rows = []
    with (
        tempfile.TemporaryDirectory() as workdir,
        SimServer(chat_ms=0, embed_ms=0) as sim,
        RedisServer(workdir) as url,
    ):
        try:
            for _ in range(args.rounds):
                rows.append(await _one(sim, questions, args, None))
                rows.append(await _one(sim, questions, args, url))
            contended = [await _contended(url, calls) for calls in (64, 512)]
        finally:
            reset_limiters()
    header = (
        f"`python bench/shared_limits.py --questions {args.questions} --concurrency {args.concurrency} --rounds "
        f"{args.rounds}` · {machine()} Simulated provider: chat {CHAT_MS} ms + {TOKEN_MS} ms/token, embeddings "
        f"{EMBED_MS} ms; hybrid retrieval (rewrite + embed + search + answer); rows alternate, one run.\n\n"
    )
    columns = ["limiter", "measured s", "ideal s", "measured/ideal", "client CPU ms/question"]
    columns += [
        "Redis requests/question (commands incl. inside scripts)",
        "peak provider requests in flight",
        "answers with citations",
    ]
    contention = table(
        "\n\nUnder contention (no provider: each call holds its slot 5 ms; two limiters stand for two replicas; "
        "the scripts include the polls of waiters for slots freed by the other one):\n\n",
        ["calls at once", "shared cap", "measured s", "ideal s", "measured/ideal", "acquire scripts/call"],
        "rrrrrr",
        contended,
    )
    return HEADING + "\n\n" + table(header, columns, "lrrrrrrr", rows) + contention + "\n"


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--questions", type=int, default=256)
    options.add_argument("--concurrency", type=int, default=64)
    options.add_argument("--rounds", type=int, default=2)
    run_writing(main_async, options, HEADING)


if __name__ == "__main__":
    main()
