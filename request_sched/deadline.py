"""Bias-aware per-request deadlines from calibrated predictions (our reading of GAPS eq. 7-8).

Eq. 7 (calibration) is what :class:`~request_sched.predictor.OutputLengthPredictor` computes: the
raw per-class estimate ``s_hat`` is pushed up by the class's own recent error,
``s_cal = s_hat + beta * MAE + gamma * s_hat * MAPE`` (EMA-MAE in tokens, EMA-MAPE a fraction), so
classes the predictor gets wrong are treated as longer than their mean.

Eq. 8 (deadline), as we read it: a request's deadline is the latest time its service may *start*
so that it still meets its SLO when its calibrated service time is charged against the SLO. Times
come from the step model, whose own error is charged the same way (``eps`` = the step model's
current MAPE, e.g. :attr:`perf_model.online.OnlineStepModel.mape`; 0 for a fixed model)::

    prefill_cal  = prefill_s(r) * (1 + eps)                          seconds
    ttft_due     = arrival + SLO_ttft
    latest_start = ttft_due - prefill_cal
    e2e_due      = arrival + SLO_e2e                                 (if an E2E SLO is given)
    latest_start = min(latest_start, e2e_due - prefill_cal - s_cal_rest * token_s * (1 + eps))

``prefill_s`` is :meth:`~request_sched.job_size.JobSizeEstimator.prefill_seconds` (the extra time
the request's uncached prefill adds to a step beside the reference decode batch), ``s_cal_rest``
the calibrated remaining output tokens and ``token_s`` the latency of one step of the reference
decode batch (the pace at which a batched request produces tokens). A request whose predicted start
lies after ``latest_start`` is predicted to miss its SLO; ``latest_start - predicted_start`` is its
slack. The rebalancer (:mod:`engine_dispatch.rebalance`) uses the slack to pick urgent requests;
request policies can order by :meth:`DeadlineEstimator.slack_s` (earliest deadline first).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from perf_model.batch import BatchShape
from request_sched.job_size import JobSizeEstimator
from request_sched.types import WaitingRequest


@dataclass(frozen=True)
class LatencySlo:
    """Per-request objectives in seconds (None: no objective on that metric)."""

    ttft_s: float
    e2e_s: float | None = None

    def __post_init__(self) -> None:
        if not self.ttft_s > 0 or (self.e2e_s is not None and not self.e2e_s >= self.ttft_s):
            raise ValueError(f"slo: expected ttft_s > 0 and e2e_s >= ttft_s, got "
                             f"ttft_s={self.ttft_s}, e2e_s={self.e2e_s}")


@dataclass(frozen=True)
class RequestDeadline:
    """Deadlines of one request (host-clock seconds) and the calibrated estimates behind them.

    Attributes:
        ttft_due_s: arrival + TTFT SLO.
        latest_start_s: latest service start that still meets every SLO (eq. 8 above).
        prefill_s: calibrated prefill time (seconds).
        output_tokens: calibrated remaining output tokens (eq. 7).
    """

    ttft_due_s: float
    latest_start_s: float
    prefill_s: float
    output_tokens: float


class DeadlineEstimator:
    """Computes :class:`RequestDeadline` for waiting requests.

    Args:
        job_size: prefill seconds and the calibrated output-length predictor (its
            ``predictor.predict_remaining`` is eq. 7).
        slo: the objectives.
        step_error: returns the step model's current relative error ``eps`` (>= 0), e.g.
            ``lambda: online_model.mape``; None = 0.
        reference_decode_seqs: sequences in the decode batch whose step time paces output tokens.
        reference_context_tokens: KV tokens per reference sequence.
    """

    def __init__(self, job_size: JobSizeEstimator, slo: LatencySlo,
                 step_error: Callable[[], float] | None = None, reference_decode_seqs: int = 32,
                 reference_context_tokens: int = 1024) -> None:
        if reference_decode_seqs < 1 or reference_context_tokens < 0:
            raise ValueError("reference_decode_seqs must be >= 1 and reference_context_tokens >= 0")
        self.job_size = job_size
        self.slo = slo
        self.step_error = step_error
        self.token_s = job_size.step_model.step_seconds(BatchShape(
            decode_seqs=reference_decode_seqs,
            kv_context_tokens=reference_decode_seqs * reference_context_tokens))

    def _eps(self) -> float:
        eps = 0.0 if self.step_error is None else float(self.step_error())
        return eps if math.isfinite(eps) and eps > 0 else 0.0

    def deadline(self, request: WaitingRequest) -> RequestDeadline:
        """Deadlines of ``request`` (``enqueue_s`` is its arrival on the host clock)."""
        bias = 1.0 + self._eps()
        prefill = self.job_size.prefill_seconds(request) * bias
        rest = self.job_size.predictor.predict_remaining(request)
        ttft_due = request.enqueue_s + self.slo.ttft_s
        latest = ttft_due - prefill
        if self.slo.e2e_s is not None:
            latest = min(latest, request.enqueue_s + self.slo.e2e_s - prefill - rest * self.token_s * bias)
        return RequestDeadline(ttft_due_s=ttft_due, latest_start_s=latest, prefill_s=prefill,
                               output_tokens=rest)

    def slack_s(self, request: WaitingRequest, predicted_start_s: float) -> float:
        """``latest_start - predicted_start`` (seconds; negative: predicted to miss its SLO)."""
        return self.deadline(request).latest_start_s - predicted_start_s
