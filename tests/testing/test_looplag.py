"""The loop-lag probe catches a blocked loop and discounts only stalls the whole machine shared."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mini.testing.looplag import LoopLagProbe, own_stalls, usable_cpus


def test_own_stalls_subtract_only_the_overlap_with_a_control_stall() -> None:
    ticks = [(10.0, 0.100), (20.0, 0.100), (30.0, 0.002)]
    # CPU 0 stalled with tick 1; CPU 1's stall (20.05 to 20.071, its 1 ms sleep included) overlapped tick 2.
    controls = [[(10.0, 0.100)], [(20.05, 0.02)]]
    own = own_stalls(ticks, controls)
    assert own[0] < 1e-9
    assert abs(own[1] - 0.079) < 1e-9
    assert abs(own[2] - 0.002) < 1e-9


async def test_probe_reports_a_loop_blocked_by_sync_sleep() -> None:
    async with LoopLagProbe() as probe:
        time.sleep(0.12)  # noqa: ASYNC251 - the point: block the loop and see the probe notice
    assert probe.own_max_ms > 90, probe.summary()


def test_own_stalls_discount_the_run_queue_wait_or_the_shared_stall_whichever_is_larger() -> None:
    ticks = [(10.0, 0.050), (20.0, 0.050), (30.0, 0.050)]
    controls = [[(20.0, 0.030)]]  # a machine-wide stall overlapping tick 2 by 31 ms
    waits = [0.045, 0.010, 0.0]  # tick 1 waited 45 ms for a CPU (others' threads ran), tick 2 10 ms
    own = own_stalls(ticks, controls, waits=waits)
    assert abs(own[0] - 0.005) < 1e-9
    assert abs(own[1] - 0.019) < 1e-9
    assert abs(own[2] - 0.050) < 1e-9


_HOG = """
import os, time
parent, end = os.getppid(), time.monotonic() + 60
while os.getppid() == parent and time.monotonic() < end:
    pass
"""


def test_usable_cpus_follow_the_cgroup_quota_not_only_the_affinity(tmp_path: Path) -> None:
    visible = sorted(os.sched_getaffinity(0))
    limits = tmp_path / "cpu.max"
    limits.write_text("max 100000\n")
    assert usable_cpus(str(limits)) == visible
    limits.write_text("50000 100000\n")  # half a CPU: one ticker, whatever the host shows
    assert usable_cpus(str(limits)) == visible[:1]
    assert usable_cpus(str(tmp_path / "absent")) == visible


@pytest.fixture
def cpu_hogs() -> Iterator[None]:
    """More busy processes than cores, for the duration of a test. Each also stops by itself after a minute
    or when orphaned, so a test process that dies before this teardown cannot leave the machine starved."""
    hogs = [subprocess.Popen([sys.executable, "-c", _HOG]) for _ in range(2 * len(usable_cpus()))]
    yield
    for hog in hogs:
        hog.kill()
        hog.wait()


async def test_a_busy_machine_is_not_our_lag_but_a_blocked_loop_still_is(cpu_hogs: None) -> None:
    # More CPU hogs than cores: the loop's thread waits in the run queue, which the probe discounts...
    async with LoopLagProbe() as busy:
        for _ in range(200):
            await asyncio.sleep(0.001)
    async with LoopLagProbe() as blocked:
        time.sleep(0.15)  # noqa: ASYNC251 - ...but a blocking call is ours, busy machine or not
    assert sum(busy.waits) > 0, "the hogs never made the loop wait: schedstat missing?"
    assert busy.own_max_ms < 50, busy.summary()
    assert blocked.own_max_ms > 100, blocked.summary()
