"""Calibrating the step model from a real CPU server: sweep rows, the scheduler's step log, the
per-request overhead of lone requests, and held-out fits (docs/simulator.md, Fidelity)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from experiments.engines.step_log import calibration_steps
from experiments.fidelity.invoke import run_moesched
from experiments.metrics.runs import RunResult, load_runs
from perf_model.model_file import load_model
from perf_model.structural import StructuralStepModel

#: output tokens of each decode sweep request (its KV grows by half of it on average)
DECODE_OUTPUT = 128


def calibration_rows(measured: dict[str, list[float]]) -> list[dict[str, Any]]:
    """One step row per sweep point: the mean over all repeats and rounds (the replay's means see
    the shared machine's slow moments too, so they are not filtered out). Decode ``BxP``: B
    decodes over ``B * (P + 64)`` KV tokens; prefill ``P``: one P-token prefill step plus one
    per-request overhead."""
    rows = []
    for name, values in measured.items():
        kind, _, size = name.partition("_")
        if kind == "decode":
            b, p = (int(x) for x in size.split("x"))
            rows.append({"decode_seqs": b, "kv_context_tokens": b * (p + DECODE_OUTPUT // 2),
                         "step_ms": statistics.fmean(values)})
        else:
            rows.append({"prefill_tokens": int(size), "kv_context_tokens": int(size), "request_overheads": 1,
                         "step_ms": statistics.fmean(values)})
    return rows


def calibrated_model(path: Path) -> StructuralStepModel:
    """The step model of a coefficients file, or of a result this script wrote (its
    ``coefficients`` entry). Raises ValueError (bad content) or OSError (unreadable)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and "coefficients" in data and "structure" not in data:
        return StructuralStepModel.from_dict(data["coefficients"], source=str(path))
    return load_model(path)


def lone_request_overhead_s(points: list[tuple[list[float], list[float]]]) -> float:
    """Per-request overhead (s) from lone requests: for each sweep point, the mean TTFT minus the
    mean logged time up to those requests' first-token output (``(ttfts_s, first_token_s)`` per
    point, :func:`logged_prefill_points`); the mean over points, at least 0. A direct measurement of
    what TTFT adds to the engine's steps."""
    if not points or any(not ttfts or not steps for ttfts, steps in points):
        raise ValueError("step log: expected every prefill sweep point to have TTFTs and logged prefill steps")
    return max(0.0, statistics.fmean(statistics.fmean(t) - statistics.fmean(st) for t, st in points))


def run_window(run: RunResult, tail_s: float = 0.5) -> tuple[float, float]:
    """Monotonic-clock seconds (start, end + ``tail_s``) of a bench run: the steps it caused end
    inside (the bench's ``round_start_monotonic_s`` and the step log share the clock)."""
    start = run.config["round_start_monotonic_s"][0]
    return start, start + run.summary["duration_s"] + tail_s


def logged_prefill_points(work: Path, rounds: int, prefill: list[int], steps: list[dict[str, Any]],
                          deferred_output: bool) -> list[tuple[list[float], list[float]]]:
    """``(TTFTs s, logged first-token times s)`` of each prefill sweep point of each round, from
    the steps that ended during that point's run (the recorder's ``end_s`` and the bench's
    ``round_start_monotonic_s`` share the monotonic clock): each lone request's prefill step, plus,
    with ``deferred_output``, the step logged right after it (its first token is output when that
    one ends; the sweep's 3 output tokens make it a timed decode step)."""
    points = []
    for r in range(rounds):
        for p in prefill:
            run = load_runs(work / f"r{r}_prefill_{p}.json")[0]
            start, end = run_window(run)
            inside = [row for row in steps if start <= row["end_s"] <= end]
            first_token = [row["step_s"] + (inside[i + 1]["step_s"] if deferred_output and i + 1 < len(inside)
                                            and inside[i + 1]["prefill_tokens"] == 0 else 0.0)
                           for i, row in enumerate(inside) if row["prefill_tokens"] > 0]
            points.append(([q.ttft_ms / 1e3 for q in run.requests if q.ok and q.ttft_ms is not None], first_token))
    return points


def calibrate(rows: list[dict[str, Any]], work: Path, name: str, request_overhead_s: float | None = None) -> Path:
    """Fit the rows with ``moesched calibrate`` (the per-request overhead kept at
    ``request_overhead_s`` when given); returns the coefficients file."""
    steps = work / f"{name}.steps.json"
    steps.write_text(json.dumps(rows))
    coef = work / f"{name}.coef.json"
    fix = ["--fix", f"request_overhead_s={request_overhead_s!r}"] if request_overhead_s is not None else []
    run_moesched(["calibrate", "--steps", str(steps), "--search-ridge", *fix, "--name", name, "--out", str(coef)])
    return coef


def fit(measured: dict[str, list[float]], work: Path, name: str, logged: list[dict[str, Any]] | None,
        windows: list[tuple[float, float]], prefill: list[int], deferred_output: bool = False
        ) -> tuple[Path, list[dict[str, Any]], float | None]:
    """Calibrate from the sweep's rows, or (``logged``, the step log's lines,
    :func:`~experiments.engines.step_log.read_step_lines`) from the steps logged during the sweep
    ``windows`` with the per-request overhead measured from the lone prefill requests. Returns the
    coefficients file, the rows fitted and the measured overhead (s) or None."""
    if logged is None:
        rows = calibration_rows(measured)
        return calibrate(rows, work, name), rows, None
    rows = calibration_steps(logged, windows)
    overhead = lone_request_overhead_s(logged_prefill_points(work, len(windows), prefill, logged,
                                                              deferred_output))
    return calibrate(rows, work, name, overhead), rows, overhead


def held_out_fits(logged: list[dict[str, Any]], rounds: dict[float, list[RunResult]], work: Path, name: str,
                  request_overhead_s: float) -> list[Path]:
    """One coefficients file per round: fitted on the step-log lines (``logged``) of every *other*
    round's replays (``rounds``: rate -> runs in round order), the per-request overhead kept fixed."""
    count = len(next(iter(rounds.values())))
    if count < 2:
        raise ValueError("--fit-on held-out-replays: expected >= 2 rounds")
    return [calibrate(calibration_steps(logged, [run_window(runs[other]) for runs in rounds.values()
                                                 for other in range(count) if other != held]),
                      work, f"{name}-held-out-r{held}", request_overhead_s)
            for held in range(count)]
