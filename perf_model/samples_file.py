"""Read measured engine steps (the rows ``moesched calibrate`` fits) from CSV, JSON or JSON lines.

One row per measured step. Columns / keys (``step_ms`` or ``step_s`` required, the rest default 0):

    step_ms | step_s          measured wall time of the step
    prefill_tokens            uncached prompt tokens computed in the step
    cached_prefill_tokens     prompt tokens served from the prefix cache
    decode_seqs               sequences that decoded one token
    kv_context_tokens         KV tokens read by attention (summed over sequences)
    prefill_attention_pairs   causal query-key pairs of prefill (0 = estimate from one sequence)
    imbalance                 expert-load max/mean of the placement (default: no MoE factors)
    remote_fraction           share of cross-GPU token->expert dispatches
    request_overheads         per-request overheads the time also contains (1 for a lone
                              request's TTFT; default 0; see perf_model.request_overhead)

Such rows come from an engine's per-step log, or from a sweep: the ITL at a fixed concurrency ``B``
(with short prompts) is a decode step of ``B`` sequences; the TTFT of a lone request with prompt
``P`` is a prefill step of ``P`` tokens plus one per-request overhead (``request_overheads: 1``).
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from perf_model.batch import BatchShape, MoeFactors
from perf_model.fit import StepSample

_INT_FIELDS = ("prefill_tokens", "cached_prefill_tokens", "decode_seqs", "kv_context_tokens")
_KNOWN = set(_INT_FIELDS) | {"request_overheads", "prefill_attention_pairs", "imbalance", "remote_fraction", "step_ms", "step_s"}


def _number(row: dict[str, Any], key: str, where: str) -> float | None:
    value = row.get(key)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: field {key!r}: expected a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{where}: field {key!r}: expected a finite number >= 0, got {value!r}")
    return number


def sample_from_row(row: dict[str, Any], where: str) -> StepSample:
    """One :class:`StepSample` from a row dict; errors name ``where`` and the field."""
    unknown = set(row) - _KNOWN
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; expected some of "
                         f"{', '.join(sorted(_KNOWN))}")
    step_ms, step_s = _number(row, "step_ms", where), _number(row, "step_s", where)
    seconds = step_s if step_s is not None else (None if step_ms is None else step_ms / 1e3)
    if not seconds:
        raise ValueError(f"{where}: expected 'step_ms' or 'step_s' > 0")
    counts = {}
    for key in (*_INT_FIELDS, "request_overheads"):
        value = _number(row, key, where) or 0.0
        if value != int(value):
            raise ValueError(f"{where}: field {key!r}: expected an integer, got {row[key]!r}")
        counts[key] = int(value)
    request_overheads = counts.pop("request_overheads")
    if counts["prefill_tokens"] + counts["decode_seqs"] == 0:
        raise ValueError(f"{where}: a step needs prefill_tokens or decode_seqs > 0")
    batch = BatchShape(**counts, prefill_attention_pairs=_number(row, "prefill_attention_pairs", where) or 0.0)
    imbalance, remote = _number(row, "imbalance", where), _number(row, "remote_fraction", where)
    moe = None
    if imbalance is not None or remote is not None:
        if imbalance is not None and imbalance < 1:
            raise ValueError(f"{where}: field 'imbalance': expected >= 1, got {imbalance}")
        if remote is not None and remote > 1:
            raise ValueError(f"{where}: field 'remote_fraction': expected <= 1, got {remote}")
        moe = MoeFactors(imbalance=imbalance or 1.0, remote_fraction=remote or 0.0)
    return StepSample(batch=batch, seconds=seconds, moe=moe, request_overheads=request_overheads)


def load_samples(path: str | os.PathLike[str]) -> list[StepSample]:
    """Measured steps from ``.csv`` (header row), ``.json`` (a list of objects) or ``.jsonl``."""
    name = os.fspath(path)
    suffix = Path(path).suffix.lower()
    text = Path(path).read_text(encoding="utf-8")
    if suffix == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        return [sample_from_row(row, f"{name}:{i + 2}") for i, row in enumerate(rows)]
    if suffix == ".jsonl":
        out = []
        for i, line in enumerate(text.splitlines()):
            if line.strip():
                out.append(sample_from_row(_json_object(line, f"{name}:{i + 1}"), f"{name}:{i + 1}"))
        return out
    if suffix == ".json":
        data = _json_value(text, name)
        if not isinstance(data, list):
            raise ValueError(f"{name}: expected a JSON list of step objects")
        return [sample_from_row(_as_object(row, f"{name}[{i}]"), f"{name}[{i}]") for i, row in enumerate(data)]
    raise ValueError(f"{name}: expected a .csv, .json or .jsonl file of measured steps")


def _json_value(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc.msg})") from None


def _json_object(text: str, where: str) -> dict[str, Any]:
    return _as_object(_json_value(text, where), where)


def _as_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected an object, got {type(value).__name__}")
    return value
