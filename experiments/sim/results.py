"""Turn a :class:`~experiments.sim.cluster.SimResult` into the run JSON's records and summary.

Token times come from the engines' step-end times: a request's tokens are produced at the ends of
the steps in its ``segments``. Records follow :class:`~experiments.metrics.records.RequestRecord`
(TTFT, TPOT, E2E from arrival = when the client sent the request, so ``start_s == arrival_s``; a
token is received ``request_overhead.response_s`` after its step ends; every token is its own chunk). Per-token ITL lists are large (one float per output token), so records
carry them only on request; the pooled ITL statistics of the summary are always computed exactly
from the step times with per-step weights, which equals ``numpy.percentile`` over the pooled gaps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from experiments.metrics.records import RequestRecord, tpot_ms
from experiments.metrics.runs import RunResult
from experiments.metrics.summary import PERCENTILES, Slo, summarize
from experiments.sim.cluster import SimResult
from experiments.sim.request_state import SimRequest


def token_times(req: SimRequest, step_end_s: list[float]) -> np.ndarray:
    """Times (s) of ``req``'s output tokens, [output_tokens]."""
    return np.concatenate([np.asarray(step_end_s[a:b + 1]) for a, b in req.segments])


def request_record(req: SimRequest, step_end_s: list[float], label: str,
                   include_itl: bool, response_s: float = 0.0) -> RequestRecord:
    """The :class:`RequestRecord` of one finished or failed request (tokens received
    ``response_s`` after their steps end)."""
    trace = req.trace
    common = dict(request_id=trace.request_id, label=label, endpoint=f"sim-engine-{req.engine_id}",
                  arrival_s=trace.arrival_s, start_s=trace.arrival_s, input_tokens=trace.input_tokens,
                  session_id=trace.session_id, priority=trace.priority)
    if req.failed:
        return RequestRecord(output_tokens=0, ttft_ms=None, tpot_ms=None, e2e_ms=None, ok=False,
                             error=req.error, **common)
    first_step = req.segments[0][0]
    last_step = req.segments[-1][1]
    ttft = (step_end_s[first_step] + response_s - trace.arrival_s) * 1e3
    e2e = (step_end_s[last_step] + response_s - trace.arrival_s) * 1e3
    itl: list[float] = []
    if include_itl and trace.output_tokens > 1:
        itl = (np.diff(token_times(req, step_end_s)) * 1e3).tolist()
    return RequestRecord(output_tokens=trace.output_tokens, ttft_ms=ttft,
                         tpot_ms=tpot_ms(e2e, ttft, trace.output_tokens), e2e_ms=e2e, itl_ms=itl,
                         ok=True, **common)


def pooled_itl_stats(result: SimResult) -> dict[str, float | None]:
    """Mean and percentiles (ms) of all inter-token gaps of all finished requests, pooled.

    Within a decoding stretch ``(a, b)`` the gaps are the step intervals ``a+1..b`` of its engine,
    each counted once per request spanning it (a difference array gives the counts); gaps between
    stretches (a preemption) are added one by one.
    """
    counts = [np.zeros(e.steps_done + 1, dtype=np.int64) for e in result.engines]
    extra: list[float] = []
    for req in result.requests:
        if not req.finished:
            continue
        ends = result.engines[req.engine_id].step_end_s
        spans = counts[req.engine_id]
        previous_end = -1
        for a, b in req.segments:
            if b > a:
                spans[a + 1] += 1
                spans[b + 1] -= 1
            if previous_end >= 0:
                extra.append(ends[a] - ends[previous_end])
            previous_end = b
    values = [np.diff(np.asarray(e.step_end_s)) for e in result.engines if e.steps_done >= 2]
    weights = [np.cumsum(c)[1:-1] for e, c in zip(result.engines, counts) if e.steps_done >= 2]
    if extra:
        values.append(np.asarray(extra))
        weights.append(np.ones(len(extra), dtype=np.int64))
    if not values:
        return {"mean": None, **{key: None for key, _ in PERCENTILES}}
    gaps = np.concatenate(values) * 1e3
    counts = np.concatenate(weights)
    keep = counts > 0
    gaps, counts = gaps[keep], counts[keep]
    if counts.size == 0:
        return {"mean": None, **{key: None for key, _ in PERCENTILES}}
    order = np.argsort(gaps, kind="stable")
    gaps, counts = gaps[order], counts[order]
    total = int(counts.sum())
    cumulative = np.cumsum(counts)
    stats: dict[str, float | None] = {"mean": float(np.dot(gaps, counts) / total)}
    for key, q in PERCENTILES:
        rank = q / 100.0 * (total - 1)  # numpy.percentile's linear interpolation over the pooled gaps
        low, high = int(np.floor(rank)), int(np.ceil(rank))
        v_low = gaps[np.searchsorted(cumulative, low, side="right")]
        v_high = gaps[np.searchsorted(cumulative, high, side="right")]
        stats[key] = float(v_low + (v_high - v_low) * (rank - low))
    return stats


def run_result(result: SimResult, label: str, config: dict[str, Any], slo: Slo = Slo(),
               include_itl: bool = False) -> RunResult:
    """The run of ``result`` in the run JSON form shared with ``moesched bench``.

    ``summary`` is :func:`~experiments.metrics.summary.summarize` of the records with ``itl_ms``
    from :func:`pooled_itl_stats`, plus simulator counters (``preemptions``, ``engine_steps``,
    ``prefix_hit_tokens``).
    """
    records = []
    for req in result.requests:
        engine = result.engines[req.engine_id] if req.engine_id >= 0 else None
        ends = engine.step_end_s if engine is not None else []
        response_s = engine.config.request_overhead.response_s if engine is not None else 0.0
        records.append(request_record(req, ends, label, include_itl, response_s))
    start = min((r.arrival_s for r in records), default=0.0)
    finish = max((r.arrival_s + (r.e2e_ms or 0.0) / 1e3 for r in records), default=0.0)
    summary = summarize(records, max(finish - start, 1e-9), slo)
    summary["itl_ms"] = pooled_itl_stats(result)
    summary["preemptions"] = result.preemptions
    summary["engine_steps"] = result.steps
    summary["prefix_hit_tokens"] = sum(r.hit_tokens for r in result.requests)
    return RunResult(label=label, config=config, summary=summary, requests=records)
