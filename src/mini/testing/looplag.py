"""Event-loop lag probe for tests: a 1 ms ticker, with stalls the whole machine also had discounted.

Shared 2-vCPU machines pause every process now and then (idle tickers in separate processes were seen
stalling 80-240 ms at the same instants). A blocking call of ours stalls only our loop, so the probe runs a
bare control ticker pinned to each CPU in its own process and subtracts, tick by tick, the time some control
ticker was stalled too. `own_max_ms` is what our code is responsible for; `raw_max_ms` is what the ticker saw.

Busy machines: when more threads want to run than there are cores (a parallel test run, a benchmark next door),
the loop's thread waits in the kernel's run queue before each tick resumes, while the control tickers, which
sleep almost all the time, are woken first. That wait is not our code either: Linux counts it per thread
(`/proc/thread-self/schedstat`, second field), and each tick is discounted by the run-queue wait it contained
(or by the control tickers' stall, whichever is larger). What is left is the loop's own CPU time and its
blocking calls, which is what a "the loop stays free" test asserts on. Without schedstat (not Linux) the
discount is zero.

Garbage collection: a full collection scans every tracked object in the process. In a test session that has
imported lancedb, pyarrow, pydantic and friends that is ~230k objects and one full collection took 100-120 ms
here, landing at random inside whichever test allocates next. By default the probe collects and then freezes
(`gc.freeze()`) what existed before it started, so what it measures is the code under test, including the
collections of its own garbage; `gc_pauses_ms` lists the collections seen while probing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
import time
from types import TracebackType

_CONTROL_TICKER = """
import os, sys, time
if int(sys.argv[1]) >= 0:
    os.sched_setaffinity(0, {int(sys.argv[1])})
print("ready", flush=True)
parent = os.getppid()
while os.getppid() == parent:  # orphaned (its test process died without stopping it): stop ticking
    started = time.monotonic()
    time.sleep(0.001)
    lag = time.monotonic() - started - 0.001
    if lag > 0.005:
        print(started, lag, flush=True)
"""

Tick = tuple[float, float]  # (start on time.monotonic, lag in seconds)
_SCHEDSTAT = "/proc/thread-self/schedstat"


def usable_cpus(cpu_max: str = "/sys/fs/cgroup/cpu.max") -> list[int]:
    """The CPUs this process may run on, at most as many as its cgroup's CPU quota allows ([-1] off Linux).

    A container can see every CPU of its host (affinity) while its quota grants two: one control ticker and
    one test hog per visible CPU would then be dozens of processes starving the whole test run."""
    if not hasattr(os, "sched_getaffinity"):
        return [-1]
    cpus = sorted(os.sched_getaffinity(0))
    try:
        with open(cpu_max) as limits:
            quota, period = limits.read().split()[:2]
        if quota != "max":
            cpus = cpus[: max(1, -(-int(quota) // int(period)))]  # ceil(quota / period)
    except (OSError, ValueError):
        pass
    return cpus


def _runqueue_wait() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU (0.0 where Linux schedstat is missing)."""
    try:
        with open(_SCHEDSTAT, "rb") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def own_stalls(
    ticks: list[Tick],
    controls: list[list[Tick]],
    interval: float = 0.001,
    waits: list[float] | None = None,
) -> list[float]:
    """Lags of our ticks minus the larger of the overlap with the worst-stalled control ticker and the tick's
    run-queue wait (`waits`, one per tick; pure, for testing)."""
    own = []
    for i, (started, lag) in enumerate(ticks):
        ended = started + interval + lag
        shared = max(
            (
                sum(
                    max(0.0, min(ended, c_start + interval + c_lag) - max(started, c_start))
                    for c_start, c_lag in stalls
                )
                for stalls in controls
            ),
            default=0.0,
        )
        waited = waits[i] if waits is not None else 0.0
        own.append(max(0.0, lag - max(shared, waited)))
    return own


class LoopLagProbe:
    """`async with LoopLagProbe() as probe: ...` then read `probe.own_max_ms` (and `raw_max_ms`, `ticks`)."""

    def __init__(self, *, interval: float = 0.001, controls: bool = True, freeze_gc: bool = True) -> None:
        self.interval = interval
        self.use_controls = controls
        self.freeze_gc = freeze_gc
        self.gc_pauses_ms: list[float] = []
        self._gc_started = 0.0
        self.ticks: list[Tick] = []
        self.waits: list[float] = []  # run-queue wait within each tick, seconds
        self.control_stalls: list[list[Tick]] = []
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._procs: list[asyncio.subprocess.Process] = []

    async def _tick(self) -> None:
        while not self._done.is_set():
            waited = _runqueue_wait()
            started = time.monotonic()
            await asyncio.sleep(self.interval)
            self.ticks.append((started, time.monotonic() - started - self.interval))
            self.waits.append(_runqueue_wait() - waited)

    async def __aenter__(self) -> LoopLagProbe:
        if self.use_controls:
            for cpu in usable_cpus():
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", _CONTROL_TICKER, str(cpu), stdout=asyncio.subprocess.PIPE
                )
                self._procs.append(proc)
                assert proc.stdout is not None
                await proc.stdout.readline()
        if self.freeze_gc:
            gc.collect()
            gc.freeze()
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.create_task(self._tick())
        await asyncio.sleep(0)
        return self

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_pauses_ms.append((time.perf_counter() - self._gc_started) * 1000.0)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._done.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        gc.callbacks.remove(self._on_gc)
        if self.freeze_gc:
            gc.unfreeze()
        for proc in self._procs:
            proc.terminate()
            try:
                output, _ = await asyncio.wait_for(proc.communicate(), timeout=10)
            except TimeoutError:  # it cannot block the test: what it printed is lost, not awaited forever
                proc.kill()
                output, _ = await proc.communicate()
            fields = [line.split() for line in output.decode().splitlines()]
            self.control_stalls.append([(float(f[0]), float(f[1])) for f in fields if len(f) == 2])

    @property
    def raw_max_ms(self) -> float:
        return max((lag for _, lag in self.ticks), default=0.0) * 1000.0

    @property
    def own_max_ms(self) -> float:
        stalls = own_stalls(self.ticks, self.control_stalls, self.interval, self.waits)
        return max(stalls, default=0.0) * 1000.0

    def summary(self) -> str:
        worst_gc = max(self.gc_pauses_ms, default=0.0)
        return (
            f"own max lag {self.own_max_ms:.1f} ms (raw {self.raw_max_ms:.1f} ms over {len(self.ticks)} ticks, "
            f"{sum(self.waits) * 1000.0:.0f} ms waiting for a CPU; "
            f"{len(self.gc_pauses_ms)} GC pauses, longest {worst_gc:.1f} ms)"
        )
