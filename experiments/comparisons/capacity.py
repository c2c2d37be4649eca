"""An engine cluster's capacity for a trace, and offered load as a fraction of it.

Method (saturating run): offer the replayed requests (repeated up to ``min_requests``, copies
sharing no prefix, see :func:`~experiments.comparisons.traces.all_at_once`) all at time 0 to the
baseline stack and measure the completion rate while the cluster is full:

    capacity = (completions in the window) / (window length)      requests/s

over the window from the 10th percentile finish time to the 90th percentile finish time or the
last first token (after it the waiting queue is empty and the batch drains), whichever is first:
the ramp-up, while the first batch fills, and the drain are excluded. The window must hold at
least 20% of the completions, otherwise N is too small to saturate the cluster and a ValueError
says so. This is the
highest request rate the stack sustains on this request mix: above it the waiting queue grows
without bound, below it the queue empties between bursts. Offered load ``rho`` then replays the
same requests with their recorded inter-arrival pattern rescaled to a mean rate of
``rho * capacity``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from experiments.comparisons.stack import Cluster, Stack, run_stack
from experiments.comparisons.traces import all_at_once
from experiments.metrics.summary import Slo
from experiments.workloads.transform import scale_to_rate
from experiments.workloads.types import TraceRequest


@dataclass(frozen=True)
class Capacity:
    """Sustainable request rate of a stack on a request mix.

    Attributes:
        rate_rps: capacity in requests/s.
        output_tokens_per_s: the output-token rate over the same window.
        requests: requests in the saturating run.
        window_s: length of the measured window (s).
        stack: label of the stack measured.
    """

    rate_rps: float
    output_tokens_per_s: float
    requests: int
    window_s: float
    stack: str

    def to_dict(self) -> dict[str, float | int | str]:
        return {"rate_rps": self.rate_rps, "output_tokens_per_s": self.output_tokens_per_s,
                "requests": self.requests, "window_s": self.window_s, "stack": self.stack,
                "method": "saturating run: completions/s from the 10th percentile finish to the 90th or the queue emptying"}


def saturation_capacity(stack: Stack, cluster: Cluster, requests: list[TraceRequest],
                        min_requests: int = 0) -> Capacity:
    """Capacity of ``stack`` on ``cluster`` for the mix of ``requests`` (module docstring), from a
    saturating run of at least ``min_requests`` requests.

    Raises ValueError when fewer than 20 requests complete or the queue emptied inside the window.
    """
    requests = all_at_once(requests, min_requests)
    run = run_stack(stack, cluster, requests, Slo(), {"saturating": True, "requests": len(requests)})
    done = sorted((r.arrival_s + r.e2e_ms / 1e3, r.output_tokens) for r in run.requests
                  if r.ok and r.e2e_ms is not None)
    if len(done) < 20:
        raise ValueError(f"capacity: only {len(done)} of {len(requests)} requests completed; need >= 20")
    last_first_token = max(r.arrival_s + r.ttft_ms / 1e3 for r in run.requests if r.ok and r.ttft_ms is not None)
    first = len(done) // 10
    end_s = min(done[(9 * len(done)) // 10][0], last_first_token)
    last = max((i for i, (t, _) in enumerate(done) if t <= end_s), default=first)
    window = done[last][0] - done[first][0]
    if last - first < len(done) // 5 or window <= 0:
        raise ValueError(f"capacity: {len(requests)} requests do not saturate the cluster (the waiting queue "
                         f"emptied after {last - first} of the {len(done)} completions); use more capacity requests")
    tokens = sum(tokens for _, tokens in done[first + 1:last + 1])
    return Capacity(rate_rps=(last - first) / window, output_tokens_per_s=tokens / window,
                    requests=len(requests), window_s=window, stack=stack.label)


@dataclass(frozen=True)
class OfferedLoad:
    """The replay rate of a comparison: ``load`` x the baseline's measured capacity."""

    capacity: Capacity
    load: float

    @property
    def rate_rps(self) -> float:
        """Offered mean request rate (requests/s)."""
        return self.load * self.capacity.rate_rps

    def to_dict(self) -> dict[str, float | int | str]:
        return {**self.capacity.to_dict(), "offered_rate_rps": self.rate_rps, "load": self.load}

    def describe(self, trace: str) -> str:
        """One line for the log, e.g. ``mooncake: capacity 15.50 req/s (round-robin, ...); offered ...``."""
        return (f"{trace}: capacity {self.capacity.rate_rps:.2f} req/s ({self.capacity.stack}, saturating run of "
                f"{self.capacity.requests} requests); offered {self.rate_rps:.2f} req/s = {self.load:g} x capacity")

    def heading(self, trace: str, requests: int) -> str:
        """Markdown heading of a trace's section in a comparison report."""
        return (f"### {trace}: {requests} requests at {self.rate_rps:.2f} req/s "
                f"({self.load:g} x capacity {self.capacity.rate_rps:.2f} req/s)")


@dataclass(frozen=True)
class Replay:
    """A trace's requests replayed at an offered load: what one comparison section runs."""

    trace: str
    offered: OfferedLoad
    requests: list[TraceRequest]

    def workload(self) -> dict[str, Any]:
        """The workload facts stored in every run's config."""
        return {"trace": self.trace, "requests": len(self.requests), "rate_rps": self.offered.rate_rps,
                "load": self.offered.load}


def replay_at_load(trace: str, recorded: list[TraceRequest], baseline: Stack, cluster: Cluster,
                   min_requests: int, load: float) -> Replay:
    """``recorded`` rescaled to ``load`` x the capacity of ``baseline`` for its mix
    (:func:`saturation_capacity` with at least ``min_requests`` requests)."""
    offered = OfferedLoad(saturation_capacity(baseline, cluster, recorded, min_requests), load)
    return Replay(trace, offered, scale_to_rate(recorded, offered.rate_rps))
