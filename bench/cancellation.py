"""Cancellation: how soon a client that drops its request ends the server's model call, per route.

    python bench/cancellation.py [--rounds 20]

The simulated provider (its own process) answers chat calls after 30 s, so every call in flight when the client
leaves can only end by being cancelled. The server (the full app over the sample corpus, uvicorn on
127.0.0.1 in a thread of this process) gets each request over a raw socket; once the simulator reports the
model call in flight, the client closes the socket. Measured: from just before the close (this process's
`time.monotonic()`) to the moment the simulator saw its client, our server, go away (its own
`time.monotonic()`, recorded per request; Linux's monotonic clock is system-wide). "before the first event":
the first model call (the rewrite; the agent's first turn) is in flight; "mid-answer": rewriting off, the
answer's stream is in flight after the `sources` event was read.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:  # `python bench/cancellation.py`; `python -m bench.cancellation` finds it as bench._common
    from _common import REPO, machine, parser, sim_embedding, table
except ModuleNotFoundError:
    from bench._common import REPO, machine, parser, sim_embedding, table

QUESTION = "When is glass collected for recycling?"
COMPLETION = {"model": "m", "messages": [{"role": "user", "content": QUESTION}]}
ROUTES: list[tuple[str, str, dict[str, Any], bytes | None]] = [
    ("before the first event", "/v1/query", {"question": QUESTION}, None),
    ("before the first event", "/v1/query/stream", {"question": QUESTION}, None),
    ("before the first event", "/v1/chat/completions", COMPLETION, None),
    ("before the first event", "/v1/chat/completions", {**COMPLETION, "stream": True}, None),
    ("before the first event", "/v1/chat/stream", {"message": QUESTION}, None),
    ("before the first event", "/v1/agent/stream", {"question": QUESTION}, None),
    ("mid-answer", "/v1/query/stream", {"question": QUESTION}, b"event: sources"),
    ("mid-answer", "/v1/chat/completions", {**COMPLETION, "stream": True}, b'"sources":'),
]


def drop_once(url: str, sim: Any, path: str, body: dict[str, Any], first: bytes | None) -> float:
    """Milliseconds from closing the client's socket to the simulator seeing the model call's client leave."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    before = len(sim.clients_gone())
    client = socket.create_connection((host, int(port)), timeout=30)
    client.sendall(head + payload)
    received = b""
    while first is not None and first not in received:
        received += client.recv(65536)
    sim.wait_for("chat", in_flight=1, timeout=30)
    closed = time.monotonic()
    client.close()
    sim.wait_for("chat", in_flight=0, timeout=10)  # raises if the call was not cancelled (latency 30 s)
    gone = sim.clients_gone()[before:]
    assert len(gone) == 1, gone
    return (gone[0][0] - closed) * 1000.0


def main() -> None:
    args = parser(__doc__, rounds=20).parse_args()
    from mini import AgenticRAG, LLMConfig, VectorStore
    from mini.server import ServerSettings, create_app
    from mini.testing.server_thread import ServerThread
    from mini.testing.sim import SimServer

    rows = []
    with SimServer(chat_ms=0, embed_ms=0) as sim, tempfile.TemporaryDirectory() as tmp:
        rag = AgenticRAG(
            VectorStore(tmp, collection_name="bench"),
            sim_embedding(sim),
            llm_config=LLMConfig(model="openai:sim-chat", base_url=sim.base_url, api_key="sim"),
        )
        assert rag.index_documents([Path(REPO) / "examples" / "corpus"]).ok
        with ServerThread(create_app(rag, settings=ServerSettings())) as server:
            for when, path, body, first in ROUTES:
                rewriting = first is None  # mid-answer: the answer's stream is the only model call
                rag.retrieval_config = dataclasses.replace(
                    rag.retrieval_config, use_query_rewriting=rewriting
                )
                sim.configure(chat_ms=30_000)
                times = sorted(drop_once(server.url, sim, path, body, first) for _ in range(args.rounds))
                sim.configure(chat_ms=0)
                stream = " (stream)" if body.get("stream") else ""
                p50, p99 = statistics.median(times), times[min(len(times) - 1, round(0.99 * len(times)))]
                rows.append(f"| `{path}`{stream} | {when} | {p50:.1f} | {p99:.1f} | {times[-1]:.1f} |")
    intro = (
        f"{args.rounds} drops per route; simulated chat latency 30 s; server in-process (uvicorn thread). "
        f"{machine()}\n\n"
    )
    print(table(intro, ["route", "client left", "p50 ms", "p99 ms", "max ms"], "llrrr", rows))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
