"""TimeWarp: running <-> wall time around measured host freezes; FreezeMonitor sees a real stall."""

import os
import signal
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from experiments.metrics.host_freezes import FreezeMonitor, TimeWarp, record_to_wall
from experiments.metrics.records import RequestRecord

intervals = st.lists(st.tuples(st.floats(0, 100), st.floats(0, 5)).map(lambda p: (p[0], p[0] + p[1])), max_size=8)


def brute_running(freezes: list[tuple[float, float]], t: float) -> float:
    """Running time by sampling: wall time minus the union of freezes before t (independent count)."""
    merged: list[list[float]] = []
    for a, b in sorted(freezes):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return t - sum(max(0.0, min(b, t) - a) for a, b in merged)


@given(intervals, st.floats(-10, 120))
def test_running_matches_independent_count(freezes, t):
    assert TimeWarp(freezes).running(t) == pytest.approx(brute_running(freezes, t), abs=1e-9)


@given(intervals, st.floats(-10, 120))
def test_wall_inverts_running(freezes, t):
    warp = TimeWarp(freezes)
    r = warp.running(t)
    w = warp.wall(r)
    assert warp.running(w) == pytest.approx(r, abs=1e-9)
    assert w <= t + 1e-9  # the earliest wall time of that running time
    if not any(a <= t <= b for a, b in warp.freezes):
        assert w == pytest.approx(t, abs=1e-9)


@given(intervals, st.floats(0, 50), st.floats(0, 50))
def test_running_is_monotone(freezes, a, d):
    warp = TimeWarp(freezes)
    assert warp.running(a + d) >= warp.running(a) - 1e-9


def test_record_gains_the_freezes_it_spans():
    warp = TimeWarp([(102.0, 103.5)])  # 1.5 s frozen, 2 s after the round began at t = 100
    simulated = RequestRecord("r", "sim", "e", arrival_s=1.0, start_s=1.0, input_tokens=10, output_tokens=3,
                              ttft_ms=500.0, tpot_ms=425.0, e2e_ms=1350.0, itl_ms=[250.0, 600.0])
    wall = record_to_wall(simulated, warp, origin_s=100.0)
    assert wall.start_s == pytest.approx(1.0)
    assert wall.ttft_ms == pytest.approx(500.0)  # first token at running 1.5 s: before the freeze
    assert wall.itl_ms == pytest.approx([250.0, 2100.0])  # the third token waits out the freeze
    assert wall.e2e_ms == pytest.approx(2850.0)
    assert wall.tpot_ms == pytest.approx(1175.0)


def test_unsorted_overlapping_freezes_merge():
    warp = TimeWarp([(5.0, 6.0), (1.0, 2.0), (1.5, 3.0)])
    assert warp.freezes == [(1.0, 3.0), (5.0, 6.0)]
    assert warp.frozen_s == pytest.approx(3.0)
    assert warp.frozen_between(0.0, 5.5) == pytest.approx(2.5)


def test_bad_interval_is_refused():
    with pytest.raises(ValueError, match="start <= end"):
        TimeWarp([(2.0, 1.0)])


def test_monitor_records_a_stopped_heartbeat():
    with FreezeMonitor(period_s=0.005, threshold_s=0.15) as monitor:
        time.sleep(0.3)
        os.kill(monitor._process.pid, signal.SIGSTOP)  # the heartbeat stands still, as in a host freeze
        stopped = time.perf_counter()  # after the signal: a beat may land between a clock read and the kill
        time.sleep(0.4)
        resumed = time.perf_counter()
        os.kill(monitor._process.pid, signal.SIGCONT)
        time.sleep(0.3)
    # the heartbeat cannot wake while stopped, so one recorded gap spans the whole stop (load only
    # widens it); 50 ms of slack for the signal to take effect on the other core
    assert any(a <= stopped + 0.05 and b >= resumed for a, b in monitor.freezes), monitor.freezes
