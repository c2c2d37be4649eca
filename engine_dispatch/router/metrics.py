"""The router's own Prometheus metrics (text exposition format 0.0.4), no client library."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter

#: decision-latency histogram buckets, seconds
DECISION_BUCKETS_S = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3)


class RouterMetrics:
    """Counters per engine URL plus a decision-latency histogram."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()      # requests sent, per engine url
        self.failures: Counter[str] = Counter()      # engine failures, per engine url
        self.retries = 0                             # requests re-sent to another engine
        self.errors: Counter[str] = Counter()        # error responses to clients, per code
        self._buckets = [0] * (len(DECISION_BUCKETS_S) + 1)
        self._decision_sum = 0.0
        self._decisions = 0

    def observe_decision(self, seconds: float) -> None:
        self._buckets[bisect_left(DECISION_BUCKETS_S, seconds)] += 1
        self._decision_sum += seconds
        self._decisions += 1

    def render(self, healthy: dict[str, bool]) -> str:
        """Exposition text; ``healthy`` maps engine url -> health."""
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
        lines += ["# HELP moesched_router_decision_seconds Time to choose an engine.",
                  "# TYPE moesched_router_decision_seconds histogram"]
        cumulative = 0
        for bound, count in zip(DECISION_BUCKETS_S, self._buckets):
            cumulative += count
            lines.append(f'moesched_router_decision_seconds_bucket{{le="{bound:g}"}} {cumulative}')
        lines.append(f'moesched_router_decision_seconds_bucket{{le="+Inf"}} {self._decisions}')
        lines.append(f"moesched_router_decision_seconds_sum {self._decision_sum:.9f}")
        lines.append(f"moesched_router_decision_seconds_count {self._decisions}")
        return "\n".join(lines) + "\n"
