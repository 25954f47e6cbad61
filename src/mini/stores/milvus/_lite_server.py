"""A Milvus Lite server for one `.db` path, run as a child process: `python -m mini.stores.milvus._lite_server PATH`.

Why a child process: Milvus Lite 3.x is a pure-Python engine that pymilvus starts inside the calling process.
Its searches hold the GIL in long stretches (numpy over the whole collection), which stalled our event loop
for 126 ms per search at 100k rows even though every call ran in a worker thread. In its own process it
cannot touch our GIL: the stall fell to 5 ms (bench/stores.py).

Protocol: the child prints the port it listens on (127.0.0.1, chosen by the OS) on the first line of stdout,
then serves until its stdin closes, which happens when the parent closes it or dies: no orphaned servers.
"""

from __future__ import annotations

import sys


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python -m mini.stores.milvus._lite_server PATH", file=sys.stderr)
        return 2
    from milvus_lite.adapter.grpc.server import start_server_in_thread

    server, db, port = start_server_in_thread(sys.argv[1], "127.0.0.1", 0)
    print(port, flush=True)
    try:
        sys.stdin.read()  # returns at EOF: the parent closed the pipe or exited
    finally:
        server.stop(grace=2).wait(3)
        db.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
