"""The loop-lag probe catches a blocked loop and discounts only stalls the whole machine shared."""

from __future__ import annotations

import time

from mini.testing.looplag import LoopLagProbe, own_stalls


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
