"""Running the real `mini` command for tests: piped, or on a pseudo-terminal (os.openpty), so
`sys.stdin/stdout.isatty()` is what a user's shell gives."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.conftest import SAMPLE_CORPUS

MINI = Path(sys.executable).with_name("mini")
# Colours, bold, hyperlinks: rich styles a terminal's output; the tests read the text.
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """No developer keys or MINI_* knobs; the suite's graph cache (MINI_CACHE_DIR) stays: it is only a cache."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "MINI_"))}
    if "MINI_CACHE_DIR" in os.environ:
        keep["MINI_CACHE_DIR"] = os.environ["MINI_CACHE_DIR"]
    return keep | (extra or {})


def mini(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MINI), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=clean_env(env),
    )


def mini_in_process(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`mini` run in this process (typer's runner): the same app, flags, settings files and exit codes, without
    the ~2 s of a new interpreter importing LanceDB. For what a command prints and returns; a check of what
    a user's terminal shows for a failure (one error line, no traceback, log lines) needs the real process."""
    import contextlib

    from typer.testing import CliRunner

    from mini.cli.main import app

    keep = clean_env(env)
    changes: dict[str, str | None] = {name: None for name in os.environ if name not in keep}
    changes.update(keep)
    with contextlib.chdir(cwd):
        result = CliRunner(env=changes).invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a bug: the real process would print its traceback
    return subprocess.CompletedProcess(["mini", *args], result.exit_code, result.stdout, result.stderr)


class Terminal:
    """`mini` with stdin and stdout on a pseudo-terminal, driven like a user: wait for a prompt, type a line.

    Typing only once the prompt is there matters: readline switches the terminal to raw mode when it starts
    reading, and keystrokes typed before that (a Ctrl-D above all) would be read under other rules."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: bool = True) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))  # 200 columns: no wrapping
        self.errors = cwd / "stderr.txt"
        with self.errors.open("w") as stderr:
            self.process = subprocess.Popen(
                [str(MINI), *args],
                stdin=slave if stdin else subprocess.DEVNULL,
                stdout=slave,
                stderr=stderr,
                cwd=cwd,
                env=clean_env(env),
            )
        os.close(slave)
        self.received = bytearray()
        self.closed = False

    def _read(self, timeout: float) -> bool:
        """Read what is there (waiting at most `timeout` s); False once the child closed the terminal."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO on Linux: the child closed its end
            data = b""
        if not data:
            self.closed = True
            return False
        self.received += data
        return True

    def expect(self, text: str, count: int = 1, timeout: float = 60) -> None:
        """Read until `text` has appeared `count` times in the output (fails after `timeout` s)."""
        deadline = time.monotonic() + timeout
        while self.text().count(text) < count:
            assert time.monotonic() < deadline and not self.closed, f"no {text!r} in {self.text()!r}"
            self._read(deadline - time.monotonic())

    def send(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        """Read to the end; (exit code, the terminal's text unstyled, stderr)."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            assert time.monotonic() < deadline, f"still running: {self.text()!r}"
            self._read(deadline - time.monotonic())
        os.close(self.master)
        code = self.process.wait(timeout=timeout)
        return code, self.text(), self.errors.read_text()

    def text(self) -> str:
        return ANSI.sub("", self.received.decode(errors="replace")).replace("\r\n", "\n")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def mini_tty(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run `mini` with stdout on a pseudo-terminal (stdin empty); (exit code, terminal text, stderr)."""
    terminal = Terminal(*args, cwd=cwd, env=env, stdin=False)
    try:
        return terminal.finish()
    finally:
        terminal.kill()


def build_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The sample corpus ingested (offline) into a fresh store; its --uri."""
    where = tmp_path_factory.mktemp("corpus_store")
    ingest = mini("ingest", str(SAMPLE_CORPUS), "--uri", str(where / "store"), cwd=where)
    assert ingest.returncode == 0, ingest.stderr
    return str(where / "store")
