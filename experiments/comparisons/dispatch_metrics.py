"""What a dispatcher did to the cluster, beyond latency: prefix-cache hit rate and load balance.

- **Prefix hit rate** = prompt tokens served from the engines' prefix caches / prompt tokens
  (``SimRequest.hit_tokens`` summed over admissions, so a request preempted and re-admitted counts
  its hits again; preemptions are reported beside it).
- **Load balance**: :class:`BalanceSampler` is a simulator :class:`~experiments.sim.cluster.Ticker`
  that moves nothing and, every ``period_s`` of simulated time, reads each engine's queued work:
  ``pending_prefill`` (prompt tokens not yet prefilled, cached prefix excluded, of the requests
  waiting or mid-prefill there) and outstanding requests (running + waiting). Samples whose total
  is 0 are skipped. Reported: ``max/mean`` = (sum over samples of the largest engine's work) /
  (sum over samples of the mean engine's work), i.e. how much more the busiest engine holds than
  the average, weighted by how much work is queued (1 = even; 8 engines: 8 = all on one); and the
  plain mean over samples of each sample's max/mean, which nearly idle moments (one request
  queued anywhere gives 8) dominate; and the time-mean queued work per engine (zero samples
  included), since a ratio alone hides how much is queued.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from experiments.sim.cluster import SimResult
from experiments.sim.engine import SimEngine


@dataclass
class BalanceSampler:
    """Samples each engine's queued work every ``period_s`` seconds (module docstring).

    ``samples[metric]`` holds one ``(max over engines, mean over engines)`` pair per sample.
    """

    period_s: float = 0.25
    ticks: int = 0
    samples: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: {"queued_prefill": [], "outstanding": []})

    def tick(self, engines: list[SimEngine], now: float) -> Iterable[int]:
        self.ticks += 1
        for name, values in (("queued_prefill", [e.pending_prefill for e in engines]),
                             ("outstanding", [len(e.running) + len(e.waiting) for e in engines])):
            total = sum(values)
            if total > 0:
                self.samples[name].append((float(max(values)), total / len(values)))
        return ()

    def summary(self) -> dict[str, float | int | None]:
        """Per metric: ``<metric>_max_over_mean`` (work-weighted), ``<metric>_max_over_mean_sample_mean``,
        ``<metric>_per_engine_time_mean`` (tokens or requests) and ``<metric>_samples`` (non-zero ones)."""
        result: dict[str, float | int | None] = {}
        for name, pairs in self.samples.items():
            maxima = np.array([m for m, _ in pairs])
            means = np.array([m for _, m in pairs])
            result[f"{name}_max_over_mean"] = float(maxima.sum() / means.sum()) if pairs else None
            result[f"{name}_max_over_mean_sample_mean"] = float(np.mean(maxima / means)) if pairs else None
            result[f"{name}_per_engine_time_mean"] = float(means.sum() / self.ticks) if self.ticks else None
            result[f"{name}_samples"] = len(pairs)
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
