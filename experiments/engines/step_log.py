"""A real SGLang server's own step log: the plugin's ``[refit]`` step file, for benchmarks.

The moesched plugin, with only its ``[refit]`` hook on (request order and DP dispatch stay
SGLang's own), appends one JSON line per timed scheduler step (``sglang_patches.hooks.step_timing``:
``wall_s``/``end_s`` at the step's end, ``step_s``, the batch shape). This module writes that
config and reads the lines back, and picks the steps that ended inside given windows (of the
monotonic clock, which the recorder's ``end_s`` and ``time.monotonic`` share) as rows
``moesched calibrate`` fits (:mod:`perf_model.samples_file`).

Standard library only, like the rest of :mod:`experiments.engines`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: batch-shape fields of a step line (``perf_model.batch.BatchShape``)
SHAPE_FIELDS = ("prefill_tokens", "cached_prefill_tokens", "decode_seqs", "kv_context_tokens",
                "prefill_attention_pairs")


def step_log_config(base_model: str, steps_path: Path, scale_bounds: tuple[float, float] | None = None) -> str:
    """A moesched config (TOML text) with only ``[refit]`` on: its online model starts from
    ``base_model`` (a preset name or coefficient file; ``scale_bounds`` widens its fast scale's
    bounds) and every timed step is appended to ``steps_path``. Callers may append sections."""
    options = f"[refit.options]\nscale_bounds = [{scale_bounds[0]}, {scale_bounds[1]}]\n" if scale_bounds else ""
    return ("[request]\nenabled = false\n[dispatch]\nenabled = false\n"
            f"[refit]\nenabled = true\nbase_model = {json.dumps(base_model)}\n"
            f"steps_file = {json.dumps(str(steps_path))}\nlog_interval_steps = 500\n" + options)


def write_step_log_config(path: Path, base_model: str, steps_path: Path,
                          scale_bounds: tuple[float, float] | None = None) -> Path:
    """Write :func:`step_log_config` to ``path``; returns ``path``."""
    path.write_text(step_log_config(base_model, steps_path, scale_bounds), encoding="utf-8")
    return path


def read_step_lines(path: Path) -> list[dict[str, Any]]:
    """Every step line of ``path``, in order of ``end_s`` (seconds, the recorder's monotonic clock)."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: expected one JSON object per line ({exc.msg})") from None
    return sorted(rows, key=lambda row: row["end_s"])


def shape_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The batch-shape fields of a step line (``BatchShape(**shape_fields(row))``)."""
    return {name: row[name] for name in SHAPE_FIELDS}


def calibration_steps(rows: Sequence[dict[str, Any]], windows: Sequence[tuple[float, float]]) -> list[dict[str, Any]]:
    """The step lines that ended inside one of ``windows`` (monotonic seconds, start and end) as
    ``moesched calibrate`` rows: ``step_s`` and the shape fields."""
    return [{"step_s": row["step_s"], **shape_fields(row)}
            for row in rows if any(start <= row["end_s"] <= end for start, end in windows)]
