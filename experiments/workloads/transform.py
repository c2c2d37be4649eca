"""Reshape a workload: take a time window, cap the request count, rescale to a target rate, clip lengths.

All functions take and return lists of :class:`TraceRequest` sorted by arrival and never mutate
their input. :func:`apply_transforms` applies them in the order window -> cap -> rate -> clip, so
"the first 200 requests after minute 5, replayed at 4 req/s" means exactly that.
"""

from __future__ import annotations

import dataclasses
import math

from experiments.workloads.types import BLOCK_TOKENS, TraceRequest


def window(requests: list[TraceRequest], start_s: float = 0.0, duration_s: float | None = None) -> list[TraceRequest]:
    """Keep requests arriving in ``[start_s, start_s + duration_s)`` and shift them so ``start_s`` is 0."""
    if start_s < 0 or (duration_s is not None and duration_s <= 0):
        raise ValueError(f"window: expected start >= 0 and duration > 0, got start={start_s}, duration={duration_s}")
    end = math.inf if duration_s is None else start_s + duration_s
    return [dataclasses.replace(r, arrival_s=r.arrival_s - start_s) for r in requests if start_s <= r.arrival_s < end]


def cap(requests: list[TraceRequest], max_requests: int) -> list[TraceRequest]:
    """The first ``max_requests`` requests by arrival."""
    if max_requests < 1:
        raise ValueError(f"max requests: expected an integer >= 1, got {max_requests}")
    return list(requests[:max_requests])


def mean_rate(requests: list[TraceRequest]) -> float:
    """Mean arrival rate in requests/s: ``(n - 1) / (last arrival - first arrival)``."""
    if len(requests) < 2:
        raise ValueError(f"rate: expected at least 2 requests to define a rate, got {len(requests)}")
    span = requests[-1].arrival_s - requests[0].arrival_s
    rate = (len(requests) - 1) / span if span > 0 else math.inf
    if not math.isfinite(rate):
        raise ValueError("rate: all requests arrive at the same instant; the rate is undefined")
    return rate


def scale_to_rate(requests: list[TraceRequest], rate_rps: float) -> list[TraceRequest]:
    """Stretch or compress time so the mean rate is ``rate_rps``; the first arrival moves to 0.

    Gaps keep their relative sizes (burstiness is preserved): ``arrival' = (arrival - first) *
    mean_rate / rate_rps``.
    """
    if not (rate_rps > 0 and math.isfinite(rate_rps)):
        raise ValueError(f"rate: expected a number > 0, got {rate_rps}")
    factor = mean_rate(requests) / rate_rps
    first = requests[0].arrival_s
    return [dataclasses.replace(r, arrival_s=(r.arrival_s - first) * factor) for r in requests]


def clip_context(requests: list[TraceRequest], max_total_tokens: int) -> list[TraceRequest]:
    """Fit every request into a ``max_total_tokens`` context (a server's max model length).

    Output is clipped first to ``max_total_tokens - 1``, then input to ``max_total_tokens - output``;
    prefix blocks beyond the clipped input are dropped. Requests that already fit are unchanged.
    """
    if max_total_tokens < 2:
        raise ValueError(f"max total tokens: expected an integer >= 2, got {max_total_tokens}")
    clipped = []
    for r in requests:
        if r.input_tokens + r.output_tokens <= max_total_tokens:
            clipped.append(r)
            continue
        out = min(r.output_tokens, max_total_tokens - 1)
        inp = min(r.input_tokens, max_total_tokens - out)
        clipped.append(dataclasses.replace(r, input_tokens=inp, output_tokens=out,
                                           prefix_blocks=r.prefix_blocks[: inp // BLOCK_TOKENS]))
    return clipped


def apply_transforms(requests: list[TraceRequest], *, start_s: float = 0.0, duration_s: float | None = None,
                     max_requests: int | None = None, rate_rps: float | None = None,
                     max_total_tokens: int | None = None) -> list[TraceRequest]:
    """Window, then cap, then rescale to ``rate_rps``, then clip lengths; None skips a step.

    Raises ``ValueError`` if nothing is left after the window.
    """
    out = window(requests, start_s, duration_s) if (start_s or duration_s is not None) else list(requests)
    if not out:
        raise ValueError(f"window: no request arrives in [{start_s}, {start_s + (duration_s or math.inf)}) s")
    if max_requests is not None:
        out = cap(out, max_requests)
    if rate_rps is not None:
        out = scale_to_rate(out, rate_rps)
    if max_total_tokens is not None:
        out = clip_context(out, max_total_tokens)
    return out
