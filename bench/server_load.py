"""Server under load: `mini serve` holding 1,000 SSE streams, a burst of 1,000, then queries, in its own process.

    python bench/server_load.py [--arrival-per-s 100] [--hold-s 10] [--sweep 25,50] [--chat-ms 300]
                                [--token-ms 50] [--streams 1000] [--waves 1] [--queries 2000]
                                [--llm-concurrency N] [--rewrite] [--profile FILE]

Three processes: the simulated provider (chat: first token after --chat-ms, then --token-ms per token;
embeddings instant), the server (`mini serve`, one uvicorn worker, the sample corpus indexed), and this client
(aiohttp, one process). Phases:
- hold (the headline): streams arrive --arrival-per-s for --hold-s seconds, each answer (scripted into the
  simulator) long enough to last 1.2x that window, so all are open together; then the same at each --sweep
  rate. Reported: streams complete, the most open at once (client, and the server's own gauge), time to first
  token p50/p99 (request sent -> first `token` event) against the simulator's own time to first token under
  the same load (direct streaming requests sent all through the phase), the server's loop lag over the phase
  (sampled inside the server every 10 ms, `GET /v1/stats?lag_last_s=...`), server CPU per stream and per
  token relayed, the server's peak RSS (VmHWM);
- burst (--waves, not a hold): --streams streams started in the same instant, the default short answer;
- queries: --queries POST /v1/query at concurrency 64 (instant provider), the server's RSS after the first
  1,000 (warm) and at the end.

The server answers without query rewriting (MINI_USE_QUERY_REWRITING=false; --rewrite turns it on), so a
stream's first token waits for one provider first token, which is what the ratio compares; and its provider
limiter admits --llm-concurrency requests (MINI_LLM_MAX_CONCURRENCY; default: the most streams of a phase, 0:
the library's default of 64). The open-file limit is raised to its hard limit here (the server inherits it):
1,000 streams hold ~2,000 sockets. --profile FILE records the server with py-spy during the holds (the burst
without holds; collapsed stacks, `py-spy record -f raw`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from mini._sse import SSEDecoder
from mini.testing.services import free_port

try:  # `python bench/server_load.py`; `python -m bench.server_load` finds it as bench._common
    from _common import REPO, add_latencies, parser, sample_questions
except ModuleNotFoundError:
    from bench._common import REPO, add_latencies, parser, sample_questions

QUESTIONS = sample_questions()


def float_list(text: str) -> list[float]:
    """argparse type for comma-separated numbers: `50,200` (empty: none)."""
    return [float(x) for x in text.split(",") if x.strip()]


def status_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory line of /proc/<pid>/status in MB (VmRSS: now; VmHWM: the peak so far)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pick(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def one_stream(session: aiohttp.ClientSession, url: str, question: str) -> tuple[float, int, bool]:
    """(seconds to the first token, tokens, ended with done)."""
    start = time.perf_counter()
    first = 0.0
    tokens = 0
    last = ""
    decoder = SSEDecoder()
    async with session.post(f"{url}/v1/query/stream", json={"question": question}) as response:
        response.raise_for_status()
        async for chunk in response.content.iter_any():
            for event in decoder.feed(chunk):
                last = event.event or ""
                if last == "token":
                    tokens += 1
                    first = first or time.perf_counter() - start
    return first, tokens, last == "done"


async def sim_ttft(session: aiohttp.ClientSession, sim_url: str) -> float:
    """Seconds from sending a streaming chat request straight to the simulator to its first content piece."""
    body = {"model": "sim-chat", "stream": True, "messages": [{"role": "user", "content": "probe"}]}
    start = time.perf_counter()
    decoder = SSEDecoder()
    async with session.post(
        f"{sim_url}/chat/completions", json=body, headers={"Authorization": "Bearer sim"}
    ) as response:
        response.raise_for_status()
        async for chunk in response.content.iter_any():
            for event in decoder.feed(chunk):
                if '"content"' in event.data:
                    return time.perf_counter() - start
    raise RuntimeError("the simulator's stream ended without content")


async def probes(session: aiohttp.ClientSession, sim_url: str, until: asyncio.Event) -> list[float]:
    """The simulator's time to first token, measured back to back until the streams are done."""
    out: list[float] = []
    while not until.is_set():
        out.append(await sim_ttft(session, sim_url))
        await asyncio.sleep(0.02)
    return out


async def one_wave(
    session: aiohttp.ClientSession, url: str, sim: Any, count: int, ramp_s: float, pid: int
) -> dict[str, Any]:
    """`count` streams (started evenly over `ramp_s` seconds; 0: all at once) and the simulator's own time to
    first token meanwhile."""
    await asyncio.to_thread(sim.reset)
    await asyncio.sleep(1.0)  # the previous wave's loop lag out of this one's window

    async def delayed(i: int, start: float) -> tuple[float, int, bool]:
        await asyncio.sleep(ramp_s * i / count)
        return await one_stream(session, url, QUESTIONS[i % len(QUESTIONS)] + f" ({i})")

    summary, _, _ = await measured_phase(
        session, url, sim, pid, lambda start: [delayed(i, start) for i in range(count)]
    )
    return summary


async def measured_phase(
    session: aiohttp.ClientSession,
    url: str,
    sim: Any,
    pid: int,
    streams: Callable[[float], list[Awaitable[tuple[float, int, bool]]]],
) -> tuple[dict[str, Any], dict[str, Any], list[tuple[float, int, bool]]]:
    """Run the streams `streams(start)` makes (each returning (seconds to first token, tokens, ended with
    done)) while probing the simulator's own time to first token; the summary every phase reports, the
    server's `/v1/stats` over the phase, and the streams that ended well."""
    done = asyncio.Event()
    probe_tasks = [asyncio.create_task(probes(session, sim.base_url, done)) for _ in range(4)]
    server_cpu, client_cpu = cpu_s(pid), time.process_time()
    start = time.perf_counter()
    results = await asyncio.gather(*streams(start), return_exceptions=True)
    wall = time.perf_counter() - start
    server_cpu, client_cpu = cpu_s(pid) - server_cpu, time.process_time() - client_cpu
    done.set()
    probed = sorted(t for times in await asyncio.gather(*probe_tasks) for t in times)
    window = {"lag_last_s": str(time.perf_counter() - start)}
    # Its own connection: one kept from the phase may have been idle for uvicorn's 5 s keep-alive timeout.
    async with aiohttp.ClientSession() as fresh, fresh.get(f"{url}/v1/stats", params=window) as response:
        stats = await response.json()
    provider = await asyncio.to_thread(sim.stats)
    ok = [r for r in results if isinstance(r, tuple) and r[2]]
    ttft = sorted(r[0] for r in ok)
    summary = {
        "completed": len(ok),
        "errors": [repr(r)[:200] for r in results if not isinstance(r, tuple)][:3],
        "failed": len(results) - len(ok),
        "ttft_p50": statistics.median(ttft) if ttft else 0.0,
        "ttft_p99": pick(ttft, 0.99),
        "sim_p50": statistics.median(probed) if probed else 0.0,
        "sim_p99": pick(probed, 0.99),
        "sim_n": len(probed),
        "tokens": statistics.median(r[1] for r in ok) if ok else 0,
        "wall": wall,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "peak_rss": status_mb(pid, "VmHWM"),
        "lag": stats["loop_lag"],
        "provider_peak": provider["chat"]["peak_in_flight"],
    }
    return summary, stats, ok


TOKEN_MARK = b"event: token\n"  # how a token frame starts (mini.server.sse); the client counts, not parses


async def held_stream(
    session: aiohttp.ClientSession, url: str, question: str, gauge: dict[str, int]
) -> tuple[float, int, bool]:
    """One stream of the hold: (seconds to the first token, tokens, ended with done). Frames are counted, not
    decoded: at 20,000 tokens a second a full SSE parse would make the client the bottleneck."""
    start = time.perf_counter()
    first = 0.0
    tokens = 0
    tail = last = b""
    gauge["open"] += 1
    gauge["peak"] = max(gauge["peak"], gauge["open"])
    try:
        async with session.post(f"{url}/v1/query/stream", json={"question": question}) as response:
            response.raise_for_status()
            async for chunk in response.content.iter_any():
                # The tail is shorter than the mark, so a mark split between two chunks counts once.
                buffer = tail + chunk
                found = buffer.count(TOKEN_MARK)
                if found and not tokens:
                    first = time.perf_counter() - start
                tokens += found
                tail = buffer[-len(TOKEN_MARK) + 1 :]
                last = buffer
        return first, tokens, b"event: done" in last
    finally:
        gauge["open"] -= 1


def hold_tokens(streams: int, rate: float, args: argparse.Namespace) -> int:
    """Answer length (tokens) for streams to last 1.2x the arrival window: the first is still open when the
    last arrives, so all `streams` are open together."""
    seconds = 1.2 * streams / rate - args.chat_ms / 1000
    return max(10, int(seconds * 1000 / args.token_ms) + 1)


async def one_hold(
    url: str, sim: Any, streams: int, rate: float, args: argparse.Namespace, pid: int
) -> dict[str, Any]:
    """`streams` streams arriving `rate` per second, each lasting 1.2x the arrival window, and the simulator's
    own time to first token meanwhile."""
    tokens = hold_tokens(streams, rate, args)
    await asyncio.to_thread(sim.reset)
    # Scripted replies, served in order to every chat request (the probes' included): the answer length.
    content = " ".join(["word"] * tokens)
    await asyncio.to_thread(sim.script, [{"content": content}] * (streams + 2_000))
    await asyncio.sleep(1.0)  # the previous phase's loop lag out of this one's window
    gauge = {"open": 0, "peak": 0}
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:

        async def arriving(i: int, start: float) -> tuple[float, int, bool]:
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            return await held_stream(session, url, QUESTIONS[i % len(QUESTIONS)] + f" ({i})", gauge)

        summary, stats, ok = await measured_phase(
            session, url, sim, pid, lambda start: [arriving(i, start) for i in range(streams)]
        )
    return {
        "rate": rate,
        "streams": streams,
        "tokens_asked": tokens,
        "peak_client": gauge["peak"],
        "peak_server": stats.get("streams", {}).get("peak", 0),
        "relayed": sum(r[1] for r in ok) or 1,
        **summary,
    }


async def holds(url: str, sim: Any, args: argparse.Namespace, pid: int) -> list[dict[str, Any]]:
    """The headline hold (--hold-streams arriving --arrival-per-s), then the other rates of --sweep."""
    rates = [args.arrival_per_s] + [r for r in args.sweep if r != args.arrival_per_s]
    out = []
    async with aiohttp.ClientSession() as session:  # warm the model, the store, the first connections
        await one_stream(session, url, QUESTIONS[0])
        await sim_ttft(session, sim.base_url)
    with profiled(pid, args.profile):
        for rate in rates:
            out.append(await one_hold(url, sim, round(rate * args.hold_s), rate, args, pid))
    return out


def hold_table(holds: list[dict[str, Any]]) -> list[str]:
    """One row per arrival rate (the headline first)."""
    head = [
        "| arrivals/s | streams, tokens each | complete | open at once: client / server "
        "| TTFT p50 / p99 | simulator's TTFT p50 / p99 | **ratio** p50 / p99 | loop lag p50 / **p99** / max "
        "| server CPU: per stream, per token | peak RSS |",
        "|---:|---|---|---|---|---|---|---|---|---:|",
    ]
    rows = []
    for h in holds:
        lag = h["lag"]
        rows.append(
            f"| {h['rate']:g} | {h['streams']}, {h['tokens']:.0f} | **{h['completed']}/{h['streams']}** "
            f"({h['failed']} failed) | {h['peak_client']} / {h['peak_server']} "
            f"| {h['ttft_p50'] * 1000:.0f} / {h['ttft_p99'] * 1000:.0f} ms "
            f"| {h['sim_p50'] * 1000:.0f} / {h['sim_p99'] * 1000:.0f} ms ({h['sim_n']}) "
            f"| **{h['ttft_p50'] / (h['sim_p50'] or 1):.2f}x** / {h['ttft_p99'] / (h['sim_p99'] or 1):.2f}x "
            f"| {lag['p50_ms']:.1f} / **{lag['p99_ms']:.1f}** / {lag['max_ms']:.0f} ms "
            f"| {h['server_cpu'] / h['streams'] * 1000:.1f} ms, {h['server_cpu'] / h['relayed'] * 1e6:.0f} µs "
            f"| {h['peak_rss']:.0f} MB |"
        )
    return head + rows


async def streams(url: str, sim: Any, args: argparse.Namespace, pid: int) -> list[dict[str, Any]]:
    """`args.waves` waves of `args.streams` streams, one after another, each from new connections."""
    # No client-side connection cap: every stream gets its own connection, as 1,000 separate users would. A
    # new session per wave: a connection kept from the previous wave may be closed by the server (uvicorn
    # closes keep-alive connections idle for 5 s) just as it is reused (ServerDisconnectedError).
    timeout = aiohttp.ClientTimeout(total=300)
    waves: list[dict[str, Any]] = []
    with profiled(pid, None if args.hold_s else args.profile):  # the holds' profile otherwise
        for wave in range(args.waves + 1):  # wave 0: one stream, to warm the model, store, first connection
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                if wave == 0:
                    await one_stream(session, url, QUESTIONS[0])
                    await sim_ttft(session, sim.base_url)
                else:
                    waves.append(await one_wave(session, url, sim, args.streams, args.ramp_s, pid))
    return waves


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
                    warm_rss = status_mb(pid)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {
        "done": done,
        "failed": failed,
        "errors": errors[:3],
        "wall": wall,
        "warm_rss": warm_rss,
        "end_rss": status_mb(pid),
        "peak_rss": status_mb(pid, "VmHWM"),
    }


def raise_open_files() -> int:
    """Raise this process's open-file limit to its hard limit (children inherit it); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


@contextlib.contextmanager
def profiled(pid: int, path: str | None) -> Any:
    """py-spy records `pid` while the block runs (collapsed stacks into `path`); nothing without a path."""
    if not path:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    recorder = subprocess.Popen(
        [spy, "record", "-p", str(pid), "-f", "raw", "-o", path, "-r", "200", "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached before the load starts (a blocking sleep: nothing else runs yet)
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=60)


def main_run(args: argparse.Namespace) -> str:
    from mini.testing.sim import SimServer

    open_files = raise_open_files()
    llm_concurrency = (
        max(args.streams, round(args.arrival_per_s * args.hold_s))
        if args.llm_concurrency is None
        else args.llm_concurrency
    )
    with SimServer(chat_ms=0, embed_ms=0) as sim, tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "OPENAI_BASE_URL": sim.base_url,
            "OPENAI_API_KEY": "sim",
            "MINI_URI": str(Path(tmp) / "store"),
            "MINI_EMBEDDING_MODEL": "openai:sim-embed",
            "MINI_LLM": "openai:sim-chat",
            "MINI_USE_QUERY_REWRITING": "true" if args.rewrite else "false",
        }
        if llm_concurrency:
            env["MINI_LLM_MAX_CONCURRENCY"] = str(llm_concurrency)
        if not args.shared_limiter:
            # Chat and embeddings on one base URL and key share one limiter, at the lower of their caps: the
            # embeddings' 64 (no MINI_ setting) would cap chat too. Another spelling of the same server makes
            # chat its own endpoint, as a user with separate chat and embedding endpoints or keys has.
            env["MINI_LLM_BASE_URL"] = sim.base_url.replace("127.0.0.1", "localhost")
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
            held = asyncio.run(holds(url, sim, args, server.pid)) if args.hold_s else []
            waves = asyncio.run(streams(url, sim, args, server.pid)) if args.waves else []
            sim.configure(chat_ms=0, token_ms=0)
            q = asyncio.run(queries(url, args.queries, server.pid)) if args.queries else None
        finally:
            server.terminate()
            server.wait(timeout=30)
            server_log.close()
            log_tail = [
                line for line in (Path(tmp) / "server.log").read_text().splitlines() if "Error" in line
            ][-5:]

    def row(name: str, cell: Any) -> str:
        return f"| {name} | " + " | ".join(cell(w) for w in waves) + " |"

    n = args.streams
    rows = [
        "| burst: all at once | " + " | ".join(f"wave {i}" for i in range(1, len(waves) + 1)) + " |",
        "|---|" + "---|" * len(waves),
        row(
            f"{n} concurrent SSE streams",
            lambda w: f"**{w['completed']}/{n} complete**, {w['failed']} failed",
        ),
        row("wall, tokens per stream", lambda w: f"{w['wall']:.2f} s, {w['tokens']:.0f} tokens"),
        row(
            "time to first token, through the server",
            lambda w: f"p50 {w['ttft_p50'] * 1000:.0f} ms, p99 {w['ttft_p99'] * 1000:.0f} ms",
        ),
        row(
            "the simulator's own, same load (direct streams)",
            lambda w: f"p50 {w['sim_p50'] * 1000:.0f} ms, p99 {w['sim_p99'] * 1000:.0f} ms ({w['sim_n']})",
        ),
        row(
            "ratio, server / simulator",
            lambda w: f"**p50 {w['ttft_p50'] / w['sim_p50']:.2f}x**, p99 {w['ttft_p99'] / w['sim_p99']:.2f}x",
        ),
        row("provider: peak chat requests in flight", lambda w: f"{w['provider_peak']}"),
        row(
            "server loop lag",
            lambda w: (
                f"p50 {w['lag']['p50_ms']:.1f} ms, **p99 {w['lag']['p99_ms']:.1f} ms**, "
                f"max {w['lag']['max_ms']:.0f} ms ({w['lag']['samples']} samples)"
            ),
        ),
        row(
            "CPU: server (per stream), client",
            lambda w: (
                f"{w['server_cpu']:.1f} s ({w['server_cpu'] / n * 1000:.1f} ms), {w['client_cpu']:.1f} s"
            ),
        ),
        row("server peak RSS (VmHWM) so far", lambda w: f"**{w['peak_rss']:.0f} MB**"),
    ]
    if not waves:
        rows = []
    errors = [e for w in [*held, *waves] for e in w["errors"]][:3]
    if q is not None:
        growth = (q["end_rss"] / q["warm_rss"] - 1) * 100 if q["warm_rss"] else 0.0
        rows += [
            "",
            "| run | result |",
            "|---|---|",
            f"| {q['done']:,} queries at concurrency 64 | {q['failed']} failed, {q['wall']:.1f} s "
            f"({q['done'] / q['wall']:.0f}/s) |",
            f"| server RSS | {q['warm_rss']:.0f} MB after 1,000 -> {q['end_rss']:.0f} MB after {q['done']:,} "
            f"(**{growth:+.1f}%**), peak {q['peak_rss']:.0f} MB |",
        ]
    hold = (
        (
            f"**Hold**: streams arriving at a steady rate for {args.hold_s:g} s, each answer long enough "
            "(1.2x the arrival window) that all are open together; the first rate is the headline, the others "
            "show where it bends. TTFT is from sending the request to the first `token` event; the "
            "simulator's own is measured meanwhile by direct streaming requests. Loop lag, open streams "
            "(server) and RSS are the server's own (`GET /v1/stats` over the phase, VmHWM).\n\n"
            + "\n".join(hold_table(held))
            + "\n\n"
        )
        if held
        else ""
    )
    burst = (
        f"**Burst** (not a hold: {args.streams} streams started in the same instant, the default "
        f"{waves[0]['tokens']:.0f}-token answer; wave 1 opens the server's provider connections, later waves "
        "reuse them):\n\n"
        if waves
        else ""
    )
    return (
        f"Simulated provider: first token after {args.chat_ms:.0f} ms, then {args.token_ms:.0f} ms per token; "
        f"server = `mini serve` (one uvicorn worker) in its own process, query rewriting "
        f"{'on' if args.rewrite else 'off'}, chat limiter {llm_concurrency or 'default (64)'} in flight"
        f"{' shared with the embeddings (64)' if args.shared_limiter else ''}; client = aiohttp, one process; "
        f"open files {open_files}; {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} cores.\n\n"
        + hold
        + burst
        + "\n".join(rows)
        + (f"\n\nstream errors: {json.dumps(errors)}" if errors else "")
        + (f"\n\nquery errors: {json.dumps(q['errors'])}" if q and q["errors"] else "")
        + (f"\n\nserver log errors: {json.dumps(log_tail)}" if log_tail else "")
    )


def main() -> None:
    options = parser(__doc__)
    options.add_argument(
        "--hold-s",
        type=float,
        default=10.0,
        help="arrival window of each hold: rate x this many streams (0: none)",
    )
    options.add_argument(
        "--arrival-per-s", type=float, default=100.0, help="the headline hold's arrival rate"
    )
    options.add_argument(
        "--sweep", type=float_list, default=[25.0, 50.0], help="more arrival rates, after the headline"
    )
    options.add_argument("--streams", type=int, default=1000, help="streams of each burst wave")
    add_latencies(options, "chat_ms")
    options.add_argument("--token-ms", type=float, default=50.0)
    options.add_argument("--queries", type=int, default=2_000)
    options.add_argument("--waves", type=int, default=1, help="burst waves (0: none)")
    options.add_argument("--ramp-s", type=float, default=0.0, help="start the streams over this long")
    options.add_argument("--llm-concurrency", type=int, default=None)
    options.add_argument(
        "--rewrite", action="store_true", help="answer with query rewriting (library default)"
    )
    options.add_argument(
        "--shared-limiter", action="store_true", help="chat and embeddings on one limiter (cap: the lower)"
    )
    options.add_argument("--profile", help="record the server with py-spy into this file (collapsed stacks)")
    print(main_run(options.parse_args()))


if __name__ == "__main__":
    main()
