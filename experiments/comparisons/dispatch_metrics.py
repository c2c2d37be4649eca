"""What a dispatcher did to the cluster, beyond latency: prefix-cache hit rate and load balance.

- **Prefix hit rate** = prompt tokens served from the engines' prefix caches / prompt tokens
  (``SimRequest.hit_tokens`` summed over admissions, so a request preempted and re-admitted counts
  its hits again; preemptions are reported beside it).
- **Load balance**: :class:`BalanceSampler` is a simulator :class:`~experiments.sim.cluster.Ticker`
  that moves nothing and, every ``period_s`` of simulated time, reads each engine's queued work:
  ``pending_prefill`` (prompt tokens not yet prefilled, cached prefix excluded, of the requests
  waiting or mid-prefill there) and outstanding requests (running + waiting). A sample's imbalance
  is ``max_e / mean_e`` over the engines (1 = even; ``engines`` = all work on one engine); samples
  whose mean is 0 are skipped. The summary is the mean over samples (equal spacing, so a time
  average over the busy period) and the 99th percentile.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from experiments.sim.cluster import SimResult
from experiments.sim.engine import SimEngine


@dataclass
class BalanceSampler:
    """Samples max/mean queued work across engines every ``period_s`` seconds (module docstring)."""

    period_s: float = 0.25
    prefill_ratios: list[float] = field(default_factory=list)
    outstanding_ratios: list[float] = field(default_factory=list)

    def tick(self, engines: list[SimEngine], now: float) -> Iterable[int]:
        for values, out in (([e.pending_prefill for e in engines], self.prefill_ratios),
                            ([len(e.running) + len(e.waiting) for e in engines], self.outstanding_ratios)):
            total = sum(values)
            if total > 0:
                out.append(max(values) * len(values) / total)
        return ()

    def summary(self) -> dict[str, float | int | None]:
        """``{queued_prefill,outstanding}_max_over_mean_{mean,p99}`` and the sample counts."""
        result: dict[str, float | int | None] = {}
        for name, ratios in (("queued_prefill", self.prefill_ratios), ("outstanding", self.outstanding_ratios)):
            result[f"{name}_max_over_mean_mean"] = float(np.mean(ratios)) if ratios else None
            result[f"{name}_max_over_mean_p99"] = float(np.percentile(ratios, 99)) if ratios else None
            result[f"{name}_samples"] = len(ratios)
        return result


def prefix_hit_rate(result: SimResult) -> float:
    """Prompt tokens served from prefix caches / prompt tokens of all requests (0 if none)."""
    prompt = sum(r.trace.input_tokens for r in result.requests)
    return sum(r.hit_tokens for r in result.requests) / prompt if prompt else 0.0


def requests_per_engine(result: SimResult) -> list[int]:
    """Requests dispatched to each engine, [engines]."""
    counts = [0] * len(result.engines)
    for r in result.requests:
        if r.engine_id >= 0:
            counts[r.engine_id] += 1
    return counts
