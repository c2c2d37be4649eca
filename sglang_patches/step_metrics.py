"""Prometheus gauges of a scheduler's online step model, served on SGLang's ``/metrics``.

SGLang 0.5.23 with ``--enable-metrics`` points ``PROMETHEUS_MULTIPROC_DIR`` at a shared directory
before it starts its processes; each scheduler writes its gauges there (``prometheus_client``'s
multiprocess mode) and the HTTP server's ``/metrics`` collects them. A scheduler with ``[refit]``
on adds, with labels ``dp_rank`` and ``tp_rank``:

* ``moesched:step_model_mape``: mean one-step-ahead |error| / measured over the last 64 steps;
* ``moesched:step_model_scale``: the fast scale on the structural model;
* ``moesched:step_model_drifts``, ``..._refits_accepted``, ``..._refits_rejected``,
  ``..._observed``, ``..._rejected_timings``: counts since the scheduler started.

Without ``PROMETHEUS_MULTIPROC_DIR`` (metrics off) nothing is created. No SGLang import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: OnlineStepModel.metrics() key -> (gauge name suffix, help text)
GAUGES = {
    "mape": ("mape", "Online step model: mean one-step-ahead |error| / measured, last 64 steps."),
    "scale": ("scale", "Online step model: fast scale on the structural step model."),
    "drifts": ("drifts", "Online step model: speed drifts detected (Page-Hinkley)."),
    "refits_accepted": ("refits_accepted", "Online step model: slow refits accepted."),
    "refits_rejected": ("refits_rejected", "Online step model: slow refits rejected."),
    "observed": ("observed", "Online step model: steps observed."),
    "rejected": ("rejected_timings", "Online step model: non-finite or non-positive timings ignored."),
}


class StepModelGauges:
    """One scheduler's gauges (``labels``: label name -> value, e.g. its DP and TP rank)."""

    def __init__(self, labels: Mapping[str, str]) -> None:
        from prometheus_client import Gauge  # after SGLang set PROMETHEUS_MULTIPROC_DIR

        self._gauges = {
            key: Gauge(f"moesched:step_model_{suffix}", help_text, labelnames=list(labels),
                       multiprocess_mode="mostrecent").labels(**labels)
            for key, (suffix, help_text) in GAUGES.items()}

    def update(self, metrics: Mapping[str, float]) -> None:
        """Set every gauge from :meth:`perf_model.online.OnlineStepModel.metrics`."""
        for key, gauge in self._gauges.items():
            gauge.set(metrics[key])


def step_model_gauges(labels: Mapping[str, str],
                      environ: Mapping[str, str] = os.environ) -> StepModelGauges | None:
    """The gauges when SGLang's metrics are on (``PROMETHEUS_MULTIPROC_DIR`` set), else None."""
    return StepModelGauges(labels) if environ.get("PROMETHEUS_MULTIPROC_DIR") else None
