"""Read and write step models as JSON coefficient files (what ``moesched calibrate`` writes).

Format::

    {"name": "...", "structure": {num_experts, top_k, dense_ridge_tokens, moe_ridge_tokens,
     reference_imbalance}, "coefficients": {overhead_s, ...}, "fit": {"r2", "mape", "samples"}}

``fit`` is optional and informational. Ridges of ``null`` mean infinity (never compute-bound).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from moesched_base.atomic import atomic_write_json
from perf_model.fit import FitReport
from perf_model.presets import PRESETS, preset_model
from perf_model.structural import StructuralStepModel


def save_model(path: str | os.PathLike[str], model: StructuralStepModel,
               report: FitReport | None = None) -> Path:
    """Atomically write ``model`` (and the fit quality of ``report``) to ``path``."""
    data = model.to_dict()
    if report is not None:
        data["fit"] = {"r2": report.r2, "mape": report.mape, "samples": report.samples,
                       "fitted": list(report.fitted)}
    return atomic_write_json(path, data)


def load_model(path: str | os.PathLike[str]) -> StructuralStepModel:
    """Read a coefficient file. Raises ValueError (bad content) or OSError (unreadable)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    return StructuralStepModel.from_dict(data, source=str(path))


def resolve_model(spec: str) -> StructuralStepModel:
    """A preset name (see :data:`~perf_model.presets.PRESETS`) or the path of a coefficient file."""
    if spec in PRESETS:
        return preset_model(spec)
    if Path(spec).exists():
        return load_model(spec)
    raise ValueError(f"gpu model {spec!r}: expected a preset ({', '.join(sorted(PRESETS))}) "
                     f"or an existing coefficients JSON file")
