"""What the real-CPU comparison reads out of a bench run: per-round TTFT by request class, ratios
with their round-to-round spread, the starvation-bound check, and the plugin's log lines.

All latencies come from the bench's per-request records (``experiments.metrics.records``): TTFT is
request sent -> first streamed token, in ms. A request is *short* iff its prompt has at most
``short_limit`` tokens (the mixed workload's class boundary).

Ratios are ``other / patched`` of a mean TTFT ("how many times lower the patched server's mean
is"), taken round by round, because rounds are interleaved (A B, B A, A B): a slow drift of the
shared machine hits both servers of one round alike. The pooled ratio divides the means over all
rounds; ``min``/``max`` are the extreme per-round ratios.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from experiments.metrics.runs import RunResult

#: marks the plugin's own log lines (request order, DP dispatch, start-up banner)
PLUGIN_LOG_MARK = re.compile(r"moesched (plugin on|request order|dp dispatch|preempt)")


@dataclass(frozen=True)
class RoundMetrics:
    """One server's replay in one round (latencies in ms; ``None`` when no request qualifies)."""

    round: int
    completed: int
    failed: int
    ttft_mean: float | None
    ttft_short_mean: float | None
    ttft_long_mean: float | None
    ttft_max: float | None
    max_itl: float | None
    request_throughput: float
    load_avg_1m: tuple[float, float] | None


def _mean(values: Sequence[float]) -> float | None:
    return fmean(values) if values else None


def round_metrics(run: RunResult, short_limit: int) -> list[RoundMetrics]:
    """Per-round metrics of ``run`` (rounds in order; completed requests only for latencies)."""
    loads = run.config.get("host_load_avg_1m") or []
    rounds = sorted({r.repeat for r in run.requests})
    out = []
    for k in rounds:
        recs = [r for r in run.requests if r.repeat == k]
        ok = [r for r in recs if r.ok and r.ttft_ms is not None]
        itls = [gap for r in ok for gap in r.itl_ms]
        summary = run.repeats[k] if k < len(run.repeats) else run.summary
        load = tuple(loads[k]) if k < len(loads) else None
        out.append(RoundMetrics(
            round=k, completed=len(ok), failed=len(recs) - len(ok),
            ttft_mean=_mean([r.ttft_ms for r in ok]),
            ttft_short_mean=_mean([r.ttft_ms for r in ok if r.input_tokens <= short_limit]),
            ttft_long_mean=_mean([r.ttft_ms for r in ok if r.input_tokens > short_limit]),
            ttft_max=max((r.ttft_ms for r in ok), default=None),
            max_itl=max(itls, default=None),
            request_throughput=float(summary["request_throughput"]),
            load_avg_1m=load))
    return out


@dataclass(frozen=True)
class Ratio:
    """``other / patched`` of one metric: pooled over rounds, and the per-round extremes."""

    metric: str
    pooled: float | None
    per_round: tuple[float, ...]

    @property
    def min(self) -> float | None:
        return min(self.per_round, default=None)

    @property
    def max(self) -> float | None:
        return max(self.per_round, default=None)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "pooled": self.pooled, "per_round": list(self.per_round),
                "min": self.min, "max": self.max}


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def ttft_ratio(patched: Sequence[RoundMetrics], other: Sequence[RoundMetrics], field_name: str) -> Ratio:
    """``other / patched`` of ``field_name`` (a ``RoundMetrics`` mean field) per round and pooled.

    The pooled value divides the round-averaged means (every round replays the same number of
    requests per class, so this equals the ratio of the means over all requests when all completed).
    """
    per_round = []
    for p, o in zip(patched, other):
        value = _div(getattr(o, field_name), getattr(p, field_name))
        if value is not None:
            per_round.append(value)
    pooled = _div(_mean([v for v in (getattr(o, field_name) for o in other) if v is not None]),
                  _mean([v for v in (getattr(p, field_name) for p in patched) if v is not None]))
    return Ratio(field_name, pooled, tuple(per_round))


@dataclass(frozen=True)
class WaitBoundCheck:
    """Did every request get its first token within ``max_wait_s`` plus one engine step?

    One step is taken as the longest inter-token gap any request saw in the same replay (a step
    that prefills a new request stalls every running decode for that step, so this is the longest
    step the server made while serving the replay). TTFT is an upper bound on the time a request
    spent in the waiting queue (it adds tokenisation, dispatch and its own prefill step).
    """

    round: int
    max_wait_s: float
    step_s: float
    bound_s: float
    ttft_max_s: float
    over_bound: int
    requests: int

    @property
    def met(self) -> bool:
        return self.over_bound == 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


def wait_bound_checks(run: RunResult, metrics: Sequence[RoundMetrics], max_wait_s: float) -> list[WaitBoundCheck]:
    """One :class:`WaitBoundCheck` per round of ``run`` (``metrics`` from :func:`round_metrics`)."""
    checks = []
    for m in metrics:
        ok = [r for r in run.requests if r.repeat == m.round and r.ok and r.ttft_ms is not None]
        step_s = (m.max_itl or 0.0) / 1000.0
        bound = max_wait_s + step_s
        checks.append(WaitBoundCheck(
            round=m.round, max_wait_s=max_wait_s, step_s=step_s, bound_s=bound,
            ttft_max_s=max((r.ttft_ms for r in ok), default=0.0) / 1000.0,
            over_bound=sum(1 for r in ok if r.ttft_ms / 1000.0 > bound), requests=len(ok)))
    return checks


def request_table(runs: Sequence[RunResult]) -> str:
    """CSV of every request of ``runs``: label, round, id, arrival, lengths, TTFT/E2E and longest gap (ms)."""
    lines = ["label,round,request_id,arrival_s,input_tokens,output_tokens,ok,ttft_ms,e2e_ms,max_itl_ms"]
    for run in runs:
        for r in sorted(run.requests, key=lambda r: (r.repeat, r.arrival_s)):
            cells = [run.label, r.repeat, r.request_id, f"{r.arrival_s:.3f}", r.input_tokens, r.output_tokens,
                     int(r.ok), _ms(r.ttft_ms), _ms(r.e2e_ms), _ms(max(r.itl_ms, default=None))]
            lines.append(",".join(str(c) for c in cells))
    return "\n".join(lines) + "\n"


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def plugin_log_lines(log_path: str | Path) -> list[str]:
    """The plugin's lines of a server log (start-up banners, orderings, dispatches, summaries)."""
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        return [line.rstrip("\n") for line in fh if PLUGIN_LOG_MARK.search(line)]


def reordered_summary(lines: Iterable[str]) -> dict[str, int]:
    """From the plugin's summary lines: the last ``passes``/``reordered`` count of each DP rank.

    Summary lines look like ``[... DP0] moesched request order [sjf-aging] summary: passes=14
    reordered=5 ...``; counts are cumulative per scheduler process, so the last line per rank wins.
    """
    last: dict[str, tuple[int, int]] = {}
    pattern = re.compile(r"(DP\d+)?\] moesched request order \[[^\]]+\] summary: passes=(\d+) reordered=(\d+)")
    for line in lines:
        match = pattern.search(line)
        if match:
            last[match.group(1) or "rank"] = (int(match.group(2)), int(match.group(3)))
    return {"passes": sum(p for p, _ in last.values()), "reordered": sum(r for _, r in last.values()),
            "ranks": len(last), "preemptions": sum(" moesched preempt #" in line for line in lines)}

