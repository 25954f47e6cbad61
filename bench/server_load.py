"""Server under load: 256 concurrent SSE streams, then 10,000 queries, against `mini serve` in its own process.

    python bench/server_load.py [--streams 256] [--chat-ms 300] [--token-ms 5] [--queries 10000]

Three processes: the simulated provider (chat: first token after --chat-ms, then --token-ms per token;
embeddings instant), the server (`mini serve`, with the sample corpus indexed), and this client (httpx).
Reported:
- streams: all complete? time to first token p50/p99 (from sending the request to the first `token` event),
  wall time, and the server's own event-loop lag p99 during the run (sampled inside the server every 10 ms,
  read from GET /v1/stats?lag_last_s=...);
- queries: --queries POST /v1/query at concurrency 64 (instant provider), the server's RSS after the first
  1,000 (warm) and at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from mini._sse import SSEDecoder

try:  # `python bench/server_load.py`; `python -m bench.server_load` finds it as bench._common
    from _common import REPO, add_latencies, parser, sample_questions
except ModuleNotFoundError:
    from bench._common import REPO, add_latencies, parser, sample_questions

QUESTIONS = sample_questions()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def one_stream(client: httpx.AsyncClient, url: str, question: str) -> tuple[float, int, bool]:
    """(seconds to the first token, tokens, ended with done)."""
    start = time.perf_counter()
    first = 0.0
    tokens = 0
    last = ""
    decoder = SSEDecoder()
    async with client.stream("POST", f"{url}/v1/query/stream", json={"question": question}) as response:
        response.raise_for_status()
        async for chunk in response.aiter_bytes():
            for event in decoder.feed(chunk):
                last = event.event or ""
                if last == "token":
                    tokens += 1
                    first = first or time.perf_counter() - start
    return first, tokens, last == "done"


async def streams(url: str, count: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=count + 8, max_keepalive_connections=count + 8)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await one_stream(client, url, QUESTIONS[0])  # warm
        start = time.perf_counter()
        results = await asyncio.gather(
            *(one_stream(client, url, QUESTIONS[i % len(QUESTIONS)] + f" ({i})") for i in range(count)),
            return_exceptions=True,
        )
        wall = time.perf_counter() - start
        stats = (await client.get(f"{url}/v1/stats", params={"lag_last_s": wall + 0.5})).json()
    ok = [r for r in results if isinstance(r, tuple) and r[2]]
    ttft = sorted(r[0] for r in ok)
    return {
        "completed": len(ok),
        "errors": [repr(r)[:200] for r in results if not isinstance(r, tuple)][:3],
        "ttft_p50": statistics.median(ttft) if ttft else 0.0,
        "ttft_p99": ttft[min(len(ttft) - 1, int(0.99 * len(ttft)))] if ttft else 0.0,
        "tokens": statistics.median(r[1] for r in ok) if ok else 0,
        "wall": wall,
        "lag": stats["loop_lag"],
    }


async def queries(url: str, total: int, pid: int, concurrency: int = 64) -> dict[str, Any]:
    # Exactly one connection per worker: none sits idle long enough for the server to close it under our feet
    # (uvicorn drops idle keep-alive connections after 5 s; reusing one at that moment is a ReadError).
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    done = 0
    failed = 0
    errors: list[str] = []
    warm_rss = 0.0
    next_index = 0
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def worker() -> None:
            nonlocal done, failed, warm_rss, next_index
            while next_index < total:
                i = next_index
                next_index += 1
                try:
                    response = await client.post(
                        f"{url}/v1/query", json={"question": QUESTIONS[i % len(QUESTIONS)]}
                    )
                    failed += response.status_code != 200
                except httpx.TransportError as exc:
                    failed += 1
                    errors.append(repr(exc))
                done += 1
                if done == min(1000, total):
                    warm_rss = rss_mb(pid)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {
        "done": done,
        "failed": failed,
        "errors": errors[:3],
        "wall": wall,
        "warm_rss": warm_rss,
        "end_rss": rss_mb(pid),
    }


def main_run(args: argparse.Namespace) -> str:
    from mini.testing.sim import SimServer

    with SimServer(chat_ms=0, embed_ms=0) as sim, tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "OPENAI_BASE_URL": sim.base_url,
            "OPENAI_API_KEY": "sim",
            "MINI_URI": str(Path(tmp) / "store"),
            "MINI_EMBEDDING_MODEL": "openai:sim-embed",
            "MINI_LLM": "openai:sim-chat",
        }
        mini = str(Path(sys.executable).with_name("mini"))
        subprocess.run(
            [mini, "ingest", str(REPO / "examples" / "corpus"), "--no-progress"],
            env=env,
            check=True,
            capture_output=True,
        )
        port = free_port()
        server_log = open(Path(tmp) / "server.log", "w+b")  # noqa: SIM115 - closed below
        server = subprocess.Popen(
            [mini, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=server_log
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "server did not start: " + (Path(tmp) / "server.log").read_text()[-2000:]
                    )
                time.sleep(0.1)
            sim.configure(chat_ms=args.chat_ms, token_ms=args.token_ms)
            s = asyncio.run(streams(url, args.streams))
            sim.configure(chat_ms=0, token_ms=0)
            q = asyncio.run(queries(url, args.queries, server.pid))
        finally:
            server.terminate()
            server.wait(timeout=30)
            server_log.close()
            log_tail = [
                line for line in (Path(tmp) / "server.log").read_text().splitlines() if "Error" in line
            ][-5:]
    growth = (q["end_rss"] / q["warm_rss"] - 1) * 100 if q["warm_rss"] else 0.0
    return (
        f"Simulated provider: first token after {args.chat_ms:.0f} ms, then {args.token_ms:.0f} ms per token; "
        f"server = `mini serve` in its own process; {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} cores.\n\n"
        "| run | result |\n|---|---|\n"
        f"| {args.streams} concurrent SSE streams | {s['completed']}/{args.streams} complete in {s['wall']:.2f} s, "
        f"{s['tokens']:.0f} tokens each |\n"
        f"| time to first token | p50 {s['ttft_p50'] * 1000:.0f} ms, p99 {s['ttft_p99'] * 1000:.0f} ms "
        f"(provider TTFT {args.chat_ms:.0f} ms, after a {args.chat_ms:.0f} ms rewrite call) |\n"
        f"| server loop lag during the streams | p50 {s['lag']['p50_ms']:.1f} ms, **p99 {s['lag']['p99_ms']:.1f} ms**, "
        f"max {s['lag']['max_ms']:.1f} ms ({s['lag']['samples']} samples) |\n"
        f"| {q['done']:,} queries at concurrency 64 | {q['failed']} failed, {q['wall']:.1f} s "
        f"({q['done'] / q['wall']:.0f}/s) |\n"
        f"| server RSS | {q['warm_rss']:.0f} MB after 1,000 -> {q['end_rss']:.0f} MB after {q['done']:,} "
        f"(**{growth:+.1f}%**) |"
        + (f"\n\nstream errors: {json.dumps(s['errors'])}" if s["errors"] else "")
        + (f"\n\nquery errors: {json.dumps(q['errors'])}" if q["errors"] else "")
        + (f"\n\nserver log errors: {json.dumps(log_tail)}" if log_tail else "")
    )


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--streams", type=int, default=256)
    add_latencies(options, "chat_ms", "token_ms")
    options.add_argument("--queries", type=int, default=10_000)
    print(main_run(options.parse_args()))


if __name__ == "__main__":
    main()
