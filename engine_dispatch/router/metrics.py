"""The router's own Prometheus metrics (text exposition format 0.0.4), no client library."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence

#: decision-latency histogram buckets, seconds
DECISION_BUCKETS_S = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3)
#: late-binding hold-time histogram buckets, seconds
HOLD_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    """A Prometheus histogram (seconds) with fixed upper bounds."""

    def __init__(self, name: str, help_text: str, bounds: tuple[float, ...]) -> None:
        self.name, self.help_text, self.bounds = name, help_text, bounds
        self._buckets = [0] * (len(bounds) + 1)
        self._sum = 0.0
        self._count = 0

    def observe(self, seconds: float) -> None:
        self._buckets[bisect_left(self.bounds, seconds)] += 1
        self._sum += seconds
        self._count += 1

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} histogram"]
        cumulative = 0
        for bound, count in zip(self.bounds, self._buckets):
            cumulative += count
            lines.append(f'{self.name}_bucket{{le="{bound:g}"}} {cumulative}')
        lines.append(f'{self.name}_bucket{{le="+Inf"}} {self._count}')
        lines.append(f"{self.name}_sum {self._sum:.9f}")
        lines.append(f"{self.name}_count {self._count}")
        return lines


class LateBindingMetrics:
    """Counters of the late-binding host (:mod:`engine_dispatch.router.late_binding`)."""

    def __init__(self) -> None:
        self.held_total = 0     # requests that waited in a hold queue
        self.moved = 0          # held requests re-targeted by the rebalancer
        self.repicked = 0       # held requests re-picked because their engine failed
        self.withdrawn = 0      # held requests dropped because their client left
        self.hold = Histogram("moesched_router_hold_seconds",
                              "Time a released request waited in a hold queue.", HOLD_BUCKETS_S)

    def observe_hold(self, seconds: float) -> None:
        self.hold.observe(seconds)

    def render(self, held_now: int) -> list[str]:
        lines = ["# HELP moesched_router_held Requests in the hold queues now.",
                 "# TYPE moesched_router_held gauge", f"moesched_router_held {held_now}"]
        for name, value, help_text in (
                ("held_total", self.held_total, "Requests that waited in a hold queue."),
                ("moves_total", self.moved, "Held requests moved to another engine by the rebalancer."),
                ("repicked_total", self.repicked, "Held requests re-picked after their engine failed."),
                ("withdrawn_total", self.withdrawn, "Held requests dropped because the client left.")):
            lines += [f"# HELP moesched_router_{name} {help_text}",
                      f"# TYPE moesched_router_{name} counter", f"moesched_router_{name} {value}"]
        return lines + self.hold.render()


class RouterMetrics:
    """Counters per engine URL plus a decision-latency histogram."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()      # requests sent, per engine url
        self.failures: Counter[str] = Counter()      # engine failures, per engine url
        self.retries = 0                             # requests re-sent to another engine
        self.errors: Counter[str] = Counter()        # error responses to clients, per code
        self.decisions = Histogram("moesched_router_decision_seconds", "Time to choose an engine.",
                                   DECISION_BUCKETS_S)

    def observe_decision(self, seconds: float) -> None:
        self.decisions.observe(seconds)

    def render(self, healthy: dict[str, bool], extra: Sequence[str] = ()) -> str:
        """Exposition text; ``healthy`` maps engine url -> health; ``extra`` lines are appended."""
        lines = ["# HELP moesched_router_requests_total Requests sent to each engine.",
                 "# TYPE moesched_router_requests_total counter"]
        lines += [f'moesched_router_requests_total{{engine="{url}"}} {n}'
                  for url, n in sorted(self.requests.items())]
        lines += ["# HELP moesched_router_engine_failures_total Engine failures (connect, 5xx, "
                  "broken stream).", "# TYPE moesched_router_engine_failures_total counter"]
        lines += [f'moesched_router_engine_failures_total{{engine="{url}"}} {n}'
                  for url, n in sorted(self.failures.items())]
        lines += ["# HELP moesched_router_retries_total Requests re-sent to another engine.",
                  "# TYPE moesched_router_retries_total counter",
                  f"moesched_router_retries_total {self.retries}",
                  "# HELP moesched_router_errors_total Error responses to clients by code.",
                  "# TYPE moesched_router_errors_total counter"]
        lines += [f'moesched_router_errors_total{{code="{code}"}} {n}'
                  for code, n in sorted(self.errors.items())]
        lines += ["# HELP moesched_router_engine_healthy 1 if the engine is in rotation.",
                  "# TYPE moesched_router_engine_healthy gauge"]
        lines += [f'moesched_router_engine_healthy{{engine="{url}"}} {int(ok)}'
                  for url, ok in healthy.items()]
        lines += self.decisions.render()
        lines += extra
        return "\n".join(lines) + "\n"
