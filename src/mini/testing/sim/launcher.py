"""`SimServer`: runs the simulated provider in a subprocess and talks to its control endpoints."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from types import TracebackType
from typing import IO, Any

from mini.testing.sim.core import READY_PREFIX, SimConfig, SimState


class SimServer:
    """Runs the simulator in a subprocess (its own GIL and event loop) and talks to it with urllib."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 20.0, **settings: Any
    ):
        SimState(SimConfig()).update(settings)  # fail fast on unknown names, before any process starts
        self.settings = settings
        self.host, self.port, self.startup_timeout = host, port, startup_timeout
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def pid(self) -> int:
        """The server process's id (benchmarks read its CPU time); the server must be running."""
        assert self._process is not None, "the sim server is not running"
        return self._process.pid

    def start(self) -> SimServer:
        argv = [sys.executable, "-m", "mini.testing.sim", f"--host={self.host}", f"--port={self.port}"]
        for name, value in self.settings.items():
            if value is not None:
                argv += [f"--{name.replace('_', '-')}", str(value)]
        # stderr goes to a file, not a pipe: an unread pipe would block the server once 64 KiB of logs pile up.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process; closed in stop()
        self._process = subprocess.Popen(
            [*argv, "--exit-on-stdin-eof"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr
        )
        try:
            self.url = self._read_ready_line()
        except BaseException:
            self.stop()
            raise
        return self

    def _read_ready_line(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout

        # readline() has no timeout; a daemon thread does, and it ends at EOF once stop() ends the process.
        lines: list[bytes] = []
        reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.startup_timeout)
        if not lines:
            raise RuntimeError(f"sim server not ready after {self.startup_timeout} s:\n{self.logs()}")
        line = lines[0].decode()
        if not line.startswith(READY_PREFIX):
            code = self._process.wait(5) if not line else self._process.poll()
            raise RuntimeError(
                f"sim server failed to start (exit code {code}, output {line!r}):\n{self.logs()}"
            )
        return line.removeprefix(READY_PREFIX).strip()

    def logs(self) -> str:
        """What the server wrote to stderr so far (warnings, tracebacks)."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def stop(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is not None:
            with process:  # leaving the block closes the pipes and reaps the child, so no zombie is left
                process.terminate()
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _call(self, method: str, path: str, body: Any = None, *, timeout: float = 10.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ValueError(f"sim server {method} {path} failed: {exc.code} {exc.read().decode()}") from exc

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")

    def reset(self) -> dict[str, Any]:
        return self._call("POST", "/reset", {})

    def arrivals(self) -> list[tuple[float, str, int, int]]:
        """Every request since the last reset: (seconds since reset, endpoint, status, retry count)."""
        return [tuple(row) for row in self._call("GET", "/arrivals")["arrivals"]]

    def clients_gone(self) -> list[tuple[float, str]]:
        """Every response cut short by its client since the last reset: (the server's `time.monotonic()` when
        it saw the client go away, endpoint). Linux's monotonic clock is system-wide: compare it with yours."""
        return [(float(at), str(endpoint)) for at, endpoint in self._call("GET", "/gone")["gone"]]

    def requests(self) -> list[dict[str, Any]]:
        """What each provider request since the last reset carried: {"path", "query" (the raw query string),
        "headers" (lower-case names)}; the first thousand."""
        return list(self._call("GET", "/requests")["requests"])

    def wait_for(self, endpoint: str = "total", *, timeout: float = 10.0, **counters: int) -> dict[str, Any]:
        """Block until every named counter of `endpoint` has the given value, e.g. `wait_for("chat",
        in_flight=0)`; the server wakes us when its counters move (no polling). Returns that endpoint's
        counters; raises TimeoutError, with the counters, after `timeout` seconds."""
        query = urllib.parse.urlencode({"endpoint": endpoint, "timeout": timeout, **counters})
        request = urllib.request.Request(f"{self.url}/wait?{query}")
        try:
            with urllib.request.urlopen(request, timeout=timeout + 10) as response:
                return json.loads(response.read())[endpoint]
        except urllib.error.HTTPError as exc:
            body = exc.read().decode()
            if exc.code == 408:
                stats = json.loads(body)[endpoint]
                raise TimeoutError(
                    f"sim {endpoint} counters not {counters} after {timeout} s: {stats}"
                ) from exc
            raise ValueError(f"sim server GET /wait failed: {exc.code} {body}") from exc

    def config(self) -> dict[str, Any]:
        return self._call("GET", "/config")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change latency/fault settings of the running server; returns the effective config."""
        return self._call("POST", "/config", settings)

    def script(self, responses: list[dict[str, Any]]) -> dict[str, Any]:
        """Queue chat replies, served first-in first-out before the built-in rules."""
        return self._call("POST", "/script", {"responses": responses})
