"""Client CPU per chat request, the number behind mini._http: AsyncOpenAI vs raw httpx vs aiohttp vs ours.

    python bench/http_clients.py [--requests 512] [--concurrency 64]

All clients send the same OpenAI chat request to the simulated provider (its own process, 20 ms latency).
CPU is this process's CPU time divided by requests, so it is what each client costs per call; lower is more
calls per core and shorter stalls of the event loop when many responses land at once.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

try:  # `python bench/http_clients.py`; `python -m bench.http_clients` finds it as bench._common
    from _common import parser, run, table
except ModuleNotFoundError:
    from bench._common import parser, run, table

MESSAGES = [
    {"role": "system", "content": "You answer questions using only the numbered sources."},
    {
        "role": "user",
        "content": "Sources:\n[1] (source: a) The budget is 5 million. More.\n\nQuestion: what?",
    },
]
PAYLOAD = {"model": "m", "messages": MESSAGES}


async def measure(send: Callable[[], Awaitable[Any]], requests: int, concurrency: int) -> tuple[float, float]:
    await send()
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with semaphore:
            await send()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(requests)))
    return (time.process_time() - cpu) / requests * 1000, time.perf_counter() - wall


async def main_async(args: argparse.Namespace) -> str:
    from mini.testing.sim import SimServer

    with SimServer(chat_ms=20, embed_ms=0) as sim:
        return await compare(sim.url, args.requests, args.concurrency)


async def compare(url: str, requests: int, concurrency: int) -> str:
    import aiohttp
    import httpx
    from openai import AsyncOpenAI, DefaultAioHttpClient

    from mini._http import HttpClient

    sdk = AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    sdk_aio = AsyncOpenAI(
        base_url=url + "/v1", api_key="x", max_retries=0, http_client=DefaultAioHttpClient()
    )
    raw_httpx = httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=1000))
    raw_aiohttp = aiohttp.ClientSession(base_url=url, connector=aiohttp.TCPConnector(limit=1000))
    ours = HttpClient(url + "/v1", provider="bench")

    async def via_httpx() -> Any:
        return (await raw_httpx.post("/v1/chat/completions", json=PAYLOAD)).json()

    async def via_aiohttp() -> Any:
        async with raw_aiohttp.post("/v1/chat/completions", json=PAYLOAD) as response:
            return await response.json()

    clients: dict[str, Callable[[], Awaitable[Any]]] = {
        "openai SDK (AsyncOpenAI, httpx2)": lambda: sdk.chat.completions.create(model="m", messages=MESSAGES),  # type: ignore[arg-type]
        "openai SDK on its aiohttp transport": lambda: sdk_aio.chat.completions.create(
            model="m", messages=MESSAGES
        ),  # type: ignore[arg-type]
        "httpx AsyncClient, raw JSON": via_httpx,
        "aiohttp ClientSession, raw JSON": via_aiohttp,
        "mini._http.HttpClient (aiohttp)": lambda: ours.post_json("/chat/completions", PAYLOAD),
    }
    rows = []
    for name, send in clients.items():
        cpu_ms, wall = await measure(send, requests, concurrency)
        rows.append(f"| {name} | {cpu_ms:.2f} | {wall:.2f} |")
    await sdk.close()
    await sdk_aio.close()
    await raw_httpx.aclose()
    await raw_aiohttp.close()
    await ours.aclose()
    intro = f"{requests} chat requests at concurrency {concurrency}, simulated provider 20 ms.\n\n"
    return table(intro, ["client", "CPU ms / request", "wall s"], "lrr", rows)


def main() -> None:
    run(main_async, parser(__doc__, requests=512, concurrency=64))


if __name__ == "__main__":
    main()
