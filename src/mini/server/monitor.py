"""The server's own event-loop lag, sampled by a ticker task (reported in `GET /v1/stats`)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time


class LoopLagMonitor:
    """Sleeps `interval` seconds in a loop and records how late each wake-up was (the loop's lag)."""

    def __init__(self, interval: float = 0.01, keep: int = 6_000) -> None:
        self.interval = interval
        self.samples: collections.deque[float] = collections.deque(maxlen=keep)  # ms, newest last
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None and self.interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="mini-loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def reset(self) -> None:
        self.samples.clear()

    async def _run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.samples.append(max(0.0, (time.perf_counter() - started - self.interval) * 1000.0))

    def summary(self, last_s: float | None = None) -> dict[str, float]:
        """Lag percentiles over every kept sample, or over those of the last `last_s` seconds."""
        samples = list(self.samples)
        if last_s is not None:
            samples = samples[-max(1, int(last_s / self.interval)) :] if self.interval > 0 else []
        ordered = sorted(samples)
        if not ordered:
            return {"samples": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}

        def pick(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

        return {
            "samples": len(ordered),
            "p50_ms": pick(0.5),
            "p99_ms": pick(0.99),
            "max_ms": round(ordered[-1], 3),
        }
