"""A manual clock to inject into time-based code, and waiting on state instead of on wall-clock windows."""

from __future__ import annotations

import time
from collections.abc import Callable


class ManualClock:
    """Monotonic seconds that move only when a test says so (`advance`); pass it as a `clock=` argument."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# Long enough for a loaded 2-core machine; a passing test returns as soon as the state is reached.
STATE_TIMEOUT = 30.0


def wait_until(condition: Callable[[], object], message: str, timeout: float = STATE_TIMEOUT) -> None:
    """Poll `condition` (from a test thread) until it is true; fail with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {message}")
        time.sleep(0.01)
