"""Read and write step models as JSON coefficient files (what ``moesched calibrate`` writes).

Format::

    {"name": "...", "structure": {num_experts, top_k, dense_ridge_tokens, moe_ridge_tokens,
     reference_imbalance}, "coefficients": {overhead_s, ...}, "fit": {"r2", "mape", "samples"},
     "request_overhead": {"enqueue_s", "response_s"}}

``fit`` is optional and informational. Ridges of ``null`` mean infinity (never compute-bound).
``request_overhead`` (optional, default 0) is the per-request latency outside engine steps
(:mod:`perf_model.request_overhead`) that the simulator adds to every request of an engine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from moesched_base.atomic import atomic_write_json
from perf_model.fit import FitReport
from perf_model.presets import PRESETS, preset_model
from perf_model.request_overhead import RequestOverhead
from perf_model.structural import StructuralStepModel


def save_model(path: str | os.PathLike[str], model: StructuralStepModel,
               report: FitReport | None = None, request_overhead: RequestOverhead | None = None) -> Path:
    """Atomically write ``model`` (the fit quality of ``report``, the per-request overhead) to ``path``."""
    data = model.to_dict()
    if report is not None:
        data["fit"] = {"r2": report.r2, "mape": report.mape, "samples": report.samples,
                       "fitted": list(report.fitted)}
    if request_overhead is not None:
        data["request_overhead"] = request_overhead.to_dict()
    return atomic_write_json(path, data)


def _read(path: str | os.PathLike[str]) -> dict:
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object with 'structure' and 'coefficients'")
    return data


def load_model(path: str | os.PathLike[str]) -> StructuralStepModel:
    """Read a coefficient file. Raises ValueError (bad content) or OSError (unreadable)."""
    return StructuralStepModel.from_dict(_read(path), source=str(path))


def load_request_overhead(path: str | os.PathLike[str]) -> RequestOverhead:
    """The ``request_overhead`` of a coefficient file (zero when the file has none)."""
    data = _read(path).get("request_overhead")
    return RequestOverhead() if data is None else RequestOverhead.from_dict(data, source=str(path))


def resolve_model(spec: str) -> StructuralStepModel:
    """A preset name (see :data:`~perf_model.presets.PRESETS`) or the path of a coefficient file."""
    if spec in PRESETS:
        return preset_model(spec)
    if Path(spec).exists():
        return load_model(spec)
    raise ValueError(f"gpu model {spec!r}: expected a preset ({', '.join(sorted(PRESETS))}) "
                     f"or an existing coefficients JSON file")


def resolve_request_overhead(spec: str) -> RequestOverhead:
    """The per-request overhead that goes with :func:`resolve_model` ``(spec)``: 0 for a preset
    (no cited GPU figure), the file's ``request_overhead`` otherwise."""
    return RequestOverhead() if spec in PRESETS else load_request_overhead(spec)
