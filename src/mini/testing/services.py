"""Throwaway services on loopback for tests and benchmarks: a free port, a redis-server, a local Ray cluster.

Each runs as child processes of the caller and is stopped by it (context managers), so a run leaves nothing
behind. Nothing here imports `redis` or `ray`: the Ray cluster is `ray start --block` processes, waited for by a
TCP connect, so a pytest worker can start one without becoming a Ray driver itself.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(process: subprocess.Popen[bytes], port: int, what: str, timeout: float) -> None:
    """Until `port` accepts a connection (a start-up bound, not a timed assertion); fails if `process` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start within {timeout:g} s") from None
            time.sleep(0.01)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in reversed(processes):
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class RedisServer:
    """Debian's `redis-server` on a free loopback port, without persistence: `with RedisServer() as url:`."""

    def __init__(self, workdir: str | Path, *, startup_timeout: float = 10.0) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("needs Debian's redis-server (apt-get install redis-server)")
        self.workdir = workdir
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        self._process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,  # an xdist worker's stdin is its channel to pytest
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_port(self._process, self.port, "redis-server", self.startup_timeout)
        except BaseException:
            _stop([self._process])
            raise
        return self.url

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            _stop([self._process])


class LocalRayCluster:
    """`ray start --head` plus `workers` worker nodes, `cpus` CPUs each, on loopback: `with ... as address:`.

    `--block` keeps every node our child, so exiting stops exactly what was started. The temp dir is short on
    purpose: Ray puts Unix sockets in it, and a path past 107 bytes (a pytest-xdist worker's tmp_path made one)
    fails a node's start. The nodes get this process's import path, so they run the same sources. A driver
    waits for the worker nodes to join with `wait_for_cpus`.
    """

    def __init__(self, *, workers: int = 1, cpus: int = 1, startup_timeout: float = 60.0) -> None:
        self.workers = workers
        self.cpus = cpus
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.temp = ""
        self._nodes: list[subprocess.Popen[bytes]] = []

    @staticmethod
    def env() -> dict[str, str]:
        """This process's environment and import path (the tree's sources first), for nodes and drivers."""
        path = os.pathsep.join(p for p in sys.path if p)
        return {**os.environ, "PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0"}

    def __enter__(self) -> str:
        ray = str(Path(sys.executable).with_name("ray"))
        self.temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
        common = [f"--num-cpus={self.cpus}", "--node-ip-address=127.0.0.1", "--block"]
        quiet: dict[str, Any] = {
            "env": self.env(),
            "stdin": subprocess.DEVNULL,  # an xdist worker's stdin is its channel to pytest
            "stdout": subprocess.DEVNULL,
            "stderr": subprocess.DEVNULL,
        }
        head = [ray, "start", "--head", f"--port={self.port}", f"--temp-dir={self.temp}"]
        head += ["--include-dashboard=false", f"--ray-client-server-port={free_port()}"]  # not a fixed 10001
        try:
            self._nodes.append(subprocess.Popen([*head, *common], **quiet))
            _wait_for_port(self._nodes[0], self.port, "the Ray head", self.startup_timeout)
            for _ in range(self.workers):
                self._nodes.append(
                    subprocess.Popen([ray, "start", f"--address={self.address}", *common], **quiet)
                )
        except BaseException:
            self.__exit__()
            raise
        return self.address

    def __exit__(self, *exc: object) -> None:
        _stop(self._nodes)
        self._nodes.clear()
        shutil.rmtree(self.temp, ignore_errors=True)


def wait_for_cpus(ray: Any, cpus: int, *, timeout: float = 60.0) -> None:
    """In a connected Ray driver (`ray` the module): until the cluster's live nodes have `cpus` CPUs, i.e. the
    worker nodes joined. A node that failed to start never joins: after `timeout` this says so."""
    deadline = time.monotonic() + timeout
    while sum(node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"]) < cpus:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Ray cluster never reached {cpus} CPUs: did a node fail to start?")
        time.sleep(0.05)


__all__ = ["LocalRayCluster", "RedisServer", "free_port", "wait_for_cpus"]
