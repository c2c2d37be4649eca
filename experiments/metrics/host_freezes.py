"""Host freezes: intervals in which the measuring machine ran nothing, and the time warp removing them.

While a real CPU engine is busy on this project's 2-core VM, the whole machine stops now and then
for 0.2-1.5 s: a sleeping heartbeat process, the bench client (requests due during the gap are
all sent at its end) and the server (first tokens of several requests arrive at the same instant)
stop together; two busy loops alone do not cause it (measured, docs/simulator.md). No engine model
reproduces that, so a fidelity check needs it measured independently of the engine:

- :class:`FreezeMonitor` runs a heartbeat process that sleeps ``period_s`` in a loop and records
  every gap longer than ``threshold_s`` between two wake-ups, as an interval on the host's
  monotonic clock (``time.perf_counter()``, CLOCK_MONOTONIC on Linux: the same clock in every
  process, and the one the bench client stamps rounds with).
- :class:`TimeWarp` maps wall time to *running time* (wall time minus the frozen time before it)
  and back. A measured round replayed in running time and mapped back gives what the engine model
  predicts for a machine that froze exactly when this one did.
"""

from __future__ import annotations

import bisect
import subprocess
import sys
from dataclasses import replace

from experiments.metrics.records import RequestRecord, tpot_ms

_HEARTBEAT = """
import sys, time
period, threshold = float(sys.argv[1]), float(sys.argv[2])
last = time.perf_counter()
while True:
    time.sleep(period)
    now = time.perf_counter()
    if now - last > threshold:
        print(f"{last!r} {now!r}", flush=True)
    last = now
"""


class FreezeMonitor:
    """Context manager recording host freezes while it is open.

    ``freezes`` (after exit): sorted ``(start_s, end_s)`` intervals on the monotonic clock, each a
    gap of more than ``threshold_s`` between two heartbeat wake-ups ``period_s`` apart. The
    heartbeat inherits this process's priority (run it at the engine's).
    """

    def __init__(self, period_s: float = 0.005, threshold_s: float = 0.2) -> None:
        if not 0 < period_s < threshold_s:
            raise ValueError(f"FreezeMonitor: expected 0 < period_s < threshold_s, got {period_s}, {threshold_s}")
        self.period_s = period_s
        self.threshold_s = threshold_s
        self.freezes: list[tuple[float, float]] = []
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> FreezeMonitor:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _HEARTBEAT, repr(self.period_s), repr(self.threshold_s)],
            stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        process = self._process
        if process is None:
            return
        process.terminate()
        out, _ = process.communicate(timeout=10)
        self.freezes = sorted((float(a), float(b)) for a, b in (line.split() for line in out.splitlines() if line))


class TimeWarp:
    """Wall time <-> running time for a set of freeze intervals (seconds on one clock).

    ``running(t) = t - (frozen time before t)``, non-decreasing and constant inside a freeze;
    ``wall(r)`` is the earliest wall time whose running time is ``r`` (the start of a freeze for
    the running time at which it began), so ``running(wall(r)) == r`` and
    ``wall(running(t)) == t`` for ``t`` outside every freeze. Overlapping intervals are merged.
    """

    def __init__(self, freezes: list[tuple[float, float]]) -> None:
        merged: list[tuple[float, float]] = []
        for start, end in sorted(freezes):
            if not end >= start:
                raise ValueError(f"TimeWarp freezes: expected start <= end, got ({start}, {end})")
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        self.freezes = merged
        self._starts = [s for s, _ in merged]
        self._frozen_before = [0.0]  # frozen time before freeze i (one more entry: the total)
        for start, end in merged:
            self._frozen_before.append(self._frozen_before[-1] + end - start)
        self._running_starts = [s - f for s, f in zip(self._starts, self._frozen_before)]

    @property
    def frozen_s(self) -> float:
        """Total frozen time (s)."""
        return self._frozen_before[-1]

    def running(self, t: float) -> float:
        """Running time of wall time ``t``."""
        i = bisect.bisect_left(self._starts, t)
        if i == 0:
            return t
        start, end = self.freezes[i - 1]
        if t >= end:
            return t - self._frozen_before[i]
        return self._running_starts[i - 1]  # inside freeze i - 1: the running time it began at

    def wall(self, r: float) -> float:
        """Earliest wall time of running time ``r``."""
        return r + self._frozen_before[bisect.bisect_left(self._running_starts, r)]

    def frozen_between(self, a: float, b: float) -> float:
        """Frozen time (s) within the wall interval ``[a, b]``."""
        return (b - a) - (self.running(b) - self.running(a))


def record_to_wall(record: RequestRecord, warp: TimeWarp, origin_s: float) -> RequestRecord:
    """``record`` with times in running time since ``running(origin_s)`` (a replay simulated in
    running time) mapped to wall time since ``origin_s``: its send time, first and later tokens."""
    origin_running = warp.running(origin_s)
    start = warp.wall(origin_running + record.start_s)
    if record.ttft_ms is None or record.e2e_ms is None:
        return replace(record, start_s=start - origin_s)
    running_start = origin_running + record.start_s
    first = running_start + record.ttft_ms / 1e3
    tokens = [first]
    for gap in record.itl_ms:
        tokens.append(tokens[-1] + gap / 1e3)
    wall_tokens = [warp.wall(t) for t in tokens]
    last = warp.wall(running_start + record.e2e_ms / 1e3)
    ttft = (wall_tokens[0] - start) * 1e3
    e2e = (last - start) * 1e3
    return replace(record, start_s=start - origin_s, ttft_ms=ttft, e2e_ms=e2e,
                   tpot_ms=tpot_ms(e2e, ttft, record.output_tokens),
                   itl_ms=[(b - a) * 1e3 for a, b in zip(wall_tokens, wall_tokens[1:])])
