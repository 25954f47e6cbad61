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
        # (when the wake-up came, perf_counter seconds; how late, ms), newest last. The time is kept because a
        # lagging loop samples less often: "the last N seconds" counted as N / interval samples reached back
        # before the window asked about (measured: a 10 s window under 1,000 streams got every sample since
        # the server started, its warm-up included).
        self.samples: collections.deque[tuple[float, float]] = collections.deque(maxlen=keep)
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
            now = time.perf_counter()
            self.samples.append((now, max(0.0, (now - started - self.interval) * 1000.0)))

    def summary(self, last_s: float | None = None) -> dict[str, float]:
        """Lag percentiles over every kept sample, or over those of the last `last_s` seconds."""
        since = -float("inf") if last_s is None else time.perf_counter() - last_s
        ordered = sorted(lag for when, lag in self.samples if when >= since)
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


class StreamGauge:
    """How many event streams are open now, and the most open at once per second (the peak over a window is
    what a load test asks about: "were 1,000 really open together?"). Two integer updates a stream: free."""

    def __init__(self, keep: int = 3_600) -> None:
        self.open = 0
        # (whole perf_counter second, most streams open during it), newest last
        self._peaks: collections.deque[tuple[int, int]] = collections.deque(maxlen=keep)

    def opened(self) -> None:
        self.open += 1
        second = int(time.perf_counter())
        if self._peaks and self._peaks[-1][0] == second:
            if self.open > self._peaks[-1][1]:
                self._peaks[-1] = (second, self.open)
        else:
            self._peaks.append((second, self.open))

    def closed(self) -> None:
        self.open -= 1

    def summary(self, last_s: float | None = None) -> dict[str, int]:
        """Open now, and the peak over every kept second or those of the last `last_s` seconds."""
        since = -float("inf") if last_s is None else int(time.perf_counter() - last_s)
        peaks = [count for second, count in self._peaks if second >= since]
        return {"open": self.open, "peak": max(peaks, default=self.open)}
