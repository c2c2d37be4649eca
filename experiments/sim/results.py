"""Turn a :class:`~experiments.sim.cluster.SimResult` into the run JSON's records and summary.

Token times come from the engines' step-end times: a request's decoding stretch ``(a, b)`` of
``segments`` produces a token at the end of step ``a`` (its prefill, or its first decode step)
and at the end of every decode step in ``(a, b]`` (``SimEngine.decode_step_flags``; every step
under vLLM-style step forming, not SGLang's prefill-only steps). Records follow :class:`~experiments.metrics.records.RequestRecord`
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
from experiments.sim.engine import SimEngine
from experiments.sim.request_state import SimRequest


def _decode_steps_before(engine: SimEngine) -> np.ndarray:
    """[steps_done + 1]: element ``s`` = decode steps among steps ``0..s-1``."""
    flags = np.frombuffer(bytes(engine.decode_step_flags), dtype=np.uint8)
    return np.concatenate([[0], np.cumsum(flags, dtype=np.int64)])


def token_times(req: SimRequest, engine: SimEngine) -> np.ndarray:
    """Times (s) of ``req``'s output tokens on ``engine``, [output_tokens]."""
    ends = np.asarray(engine.step_emit_s)
    decode_steps = np.flatnonzero(np.frombuffer(bytes(engine.decode_step_flags), dtype=np.uint8))
    before = _decode_steps_before(engine)
    parts = []
    for a, b in req.segments:
        parts.append(ends[a:a + 1])
        parts.append(ends[decode_steps[before[a + 1]:before[b + 1]]])
    return np.concatenate(parts)


def request_record(req: SimRequest, engine: SimEngine | None, label: str,
                   include_itl: bool, response_s: float = 0.0) -> RequestRecord:
    """The :class:`RequestRecord` of one finished or failed request on ``engine`` (None: never
    dispatched) (tokens received ``response_s`` after their steps end)."""
    trace = req.trace
    common = dict(request_id=trace.request_id, label=label, endpoint=f"sim-engine-{req.engine_id}",
                  arrival_s=trace.arrival_s, start_s=trace.arrival_s, input_tokens=trace.input_tokens,
                  session_id=trace.session_id, priority=trace.priority)
    if req.failed or engine is None:
        return RequestRecord(output_tokens=0, ttft_ms=None, tpot_ms=None, e2e_ms=None, ok=False,
                             error=req.error, **common)
    step_emit_s = engine.step_emit_s
    first_step = req.segments[0][0]
    last_step = req.segments[-1][1]
    ttft = (step_emit_s[first_step] + response_s - trace.arrival_s) * 1e3
    e2e = (step_emit_s[last_step] + response_s - trace.arrival_s) * 1e3
    itl: list[float] = []
    if include_itl and trace.output_tokens > 1:
        itl = (np.diff(token_times(req, engine)) * 1e3).tolist()
    return RequestRecord(output_tokens=trace.output_tokens, ttft_ms=ttft,
                         tpot_ms=tpot_ms(e2e, ttft, trace.output_tokens), e2e_ms=e2e, itl_ms=itl,
                         ok=True, **common)


def pooled_itl_stats(result: SimResult) -> dict[str, float | None]:
    """Mean and percentiles (ms) of all inter-token gaps of all finished requests, pooled.

    Within a decoding stretch ``(a, b)`` the gaps after the first are the intervals between
    consecutive decode steps of its engine in ``(a, b]``, each counted once per request spanning
    it (a difference array over decode steps gives the counts); the first gap of a stretch (from
    step ``a`` to the next decode step) and the gaps between stretches (a preemption) are added
    one by one.
    """
    befores = [_decode_steps_before(e) for e in result.engines]
    counts = [np.zeros(int(b[-1]) + 1, dtype=np.int64) for b in befores]
    decode_ends = [np.asarray(e.step_emit_s)[np.flatnonzero(np.frombuffer(bytes(e.decode_step_flags), dtype=np.uint8))]
                   for e in result.engines]
    extra: list[float] = []
    for req in result.requests:
        if not req.finished:
            continue
        ends = result.engines[req.engine_id].step_emit_s
        before = befores[req.engine_id]
        spans = counts[req.engine_id]
        previous_end = -1
        for a, b in req.segments:
            first, last = int(before[a + 1]), int(before[b + 1])  # decode steps [first, last) in (a, b]
            if last > first:
                extra.append(decode_ends[req.engine_id][first] - ends[a])
            if last > first + 1:
                spans[first + 1] += 1
                spans[last] -= 1
            if previous_end >= 0:
                extra.append(ends[a] - ends[previous_end])
            previous_end = b
    values = [np.diff(d) for d in decode_ends if d.size >= 2]
    weights = [np.cumsum(c)[1:-1] for d, c in zip(decode_ends, counts) if d.size >= 2]
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
        response_s = engine.config.request_overhead.response_s if engine is not None else 0.0
        records.append(request_record(req, engine, label, include_itl, response_s))
    start = min((r.arrival_s for r in records), default=0.0)
    finish = max((r.arrival_s + (r.e2e_ms or 0.0) / 1e3 for r in records), default=0.0)
    summary = summarize(records, max(finish - start, 1e-9), slo)
    summary["itl_ms"] = pooled_itl_stats(result)
    summary["preemptions"] = result.preemptions
    summary["engine_steps"] = result.steps
    summary["prefix_hit_tokens"] = sum(r.hit_tokens for r in result.requests)
    return RunResult(label=label, config=config, summary=summary, requests=records)
