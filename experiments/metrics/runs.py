"""The run JSON every comparison writes (benchmark client and simulator alike), and its validation.

File layout::

    {"schema": "moesched.runs/1",
     "runs": [{"label": str, "config": {...}, "summary": {...}, "requests": [record, ...],
               "repeats": [summary, ...]}]}

``summary`` is :func:`experiments.metrics.summary.summarize` over all of the run's requests;
``repeats`` holds one summary per repetition round (empty for a single round), so ratios between
runs can be checked round by round; ``requests`` are :class:`RequestRecord` dicts. ``config`` is
free-form (endpoint, model, workload, options). Extra summary keys are allowed; the required ones
are type-checked on load.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from moesched_base.atomic import atomic_write_json
from moesched_base.json_file import read_json

from experiments.metrics.records import RequestRecord
from experiments.metrics.summary import LATENCY_KEYS, STAT_KEYS

SCHEMA = "moesched.runs/1"


@dataclass
class RunResult:
    """One labelled run: its configuration, summary, per-request records and per-round summaries."""

    label: str
    config: dict[str, Any]
    summary: dict[str, Any]
    requests: list[RequestRecord]
    repeats: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "config": self.config, "summary": self.summary,
                "requests": [r.to_dict() for r in self.requests], "repeats": self.repeats}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_summary(summary: Any, where: str) -> None:
    """Raise ``ValueError("where.key: expected ...")`` unless ``summary`` has the required keys and types."""
    if not isinstance(summary, dict):
        raise ValueError(f"{where}: expected an object, got {type(summary).__name__}")
    for key in LATENCY_KEYS:
        stats = summary.get(key)
        if not isinstance(stats, dict) or any(s not in stats for s in STAT_KEYS):
            raise ValueError(f"{where}.{key}: expected an object with {', '.join(STAT_KEYS)}")
        for s in STAT_KEYS:
            if stats[s] is not None and not _is_number(stats[s]):
                raise ValueError(f"{where}.{key}.{s}: expected a number or null, got {stats[s]!r}")
    for key in ("completed", "failed"):
        if not isinstance(summary.get(key), int) or isinstance(summary.get(key), bool) or summary[key] < 0:
            raise ValueError(f"{where}.{key}: expected an integer >= 0, got {summary.get(key)!r}")
    for key, optional in (("output_throughput", False), ("duration_s", False), ("slo_attainment", True),
                          ("goodput", True)):
        value = summary.get(key)
        if key not in summary or not (_is_number(value) or (optional and value is None)):
            raise ValueError(f"{where}.{key}: expected a number{' or null' if optional else ''}, got {value!r}")


def run_from_dict(obj: Any, where: str) -> RunResult:
    """Parse and validate one run object."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected an object, got {type(obj).__name__}")
    if not isinstance(obj.get("label"), str) or not obj["label"]:
        raise ValueError(f"{where}.label: expected a non-empty string, got {obj.get('label')!r}")
    if not isinstance(obj.get("config"), dict):
        raise ValueError(f"{where}.config: expected an object")
    validate_summary(obj.get("summary"), f"{where}.summary")
    requests = obj.get("requests")
    if not isinstance(requests, list):
        raise ValueError(f"{where}.requests: expected a list")
    repeats = obj.get("repeats", [])
    if not isinstance(repeats, list):
        raise ValueError(f"{where}.repeats: expected a list")
    for i, rep in enumerate(repeats):
        validate_summary(rep, f"{where}.repeats[{i}]")
    return RunResult(
        label=obj["label"], config=obj["config"], summary=obj["summary"],
        requests=[RequestRecord.from_dict(r, f"{where}.requests[{i}]") for i, r in enumerate(requests)],
        repeats=repeats,
    )


def dump_runs(path: str | os.PathLike[str], runs: list[RunResult]) -> None:
    """Atomically write ``runs`` as run JSON (validated first, so nothing invalid is ever written)."""
    payload = {"schema": SCHEMA, "runs": [run.to_dict() for run in runs]}
    for i, run in enumerate(payload["runs"]):
        run_from_dict(run, f"runs[{i}]")
    atomic_write_json(path, payload)


def load_runs(path: str | os.PathLike[str]) -> list[RunResult]:
    """Read and validate run JSON; errors read ``"file: runs[2].summary.ttft_ms: expected ..."``."""
    name = os.fspath(path)
    obj = read_json(path, "run JSON")
    try:
        if not isinstance(obj, dict) or not isinstance(obj.get("runs"), list):
            raise ValueError("runs: expected a top-level object with a list 'runs'")
        if obj.get("schema", SCHEMA) != SCHEMA:
            raise ValueError(f"schema: expected {SCHEMA!r}, got {obj['schema']!r}")
        return [run_from_dict(run, f"runs[{i}]") for i, run in enumerate(obj["runs"])]
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
