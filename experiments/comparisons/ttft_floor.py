"""How low mean TTFT can go in a full-stack run, whatever the scheduler (an estimate).

Reads a ``full_stack`` summary (``results/comparisons/full_stack_ep8/summary.json``) and, per
trace without prefix-cache ids (the Azure traces), estimates a floor on mean TTFT in the same
cluster at the same offered rate:

    floor = mean_i prefill_alone_i + decode_step / 2

- ``prefill_alone_i``: the step model's time for request ``i``'s whole prompt as a step of its own
  (no decodes beside it, no queue ahead of it, no prefix hit: these traces carry no prefix ids), at a
  perfect placement (MoE imbalance 1.0) with no all-to-all (remote share 0): nothing a scheduler or
  placement does makes a prompt's own compute shorter in this model.
- ``decode_step``: the decode-only step length at which an engine keeps up with its share of the
  output rate: the fixed point of ``s = step(decodes = lambda_e * mean_output * s, context = decodes
  * (mean_input + mean_output / 2))`` (``lambda_e`` = offered rate / engines; at the same perfect
  placement). Engines at load ~0.9 step back to back, so an arrival first waits for the step in
  progress to end: half a step on average when steps are equal, more when they vary. Prefill work
  only lengthens steps.

It is an estimate, not a bound: the step model is evaluated at the mean batch, and the traces'
bursts are ignored. Prints a table and writes JSON (``--out``).

Usage: python -m experiments.comparisons.ttft_floor [--summary FILE] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from experiments.comparisons.cli_common import script_main
from experiments.comparisons.full_stack import BASELINE, CLUSTERS
from experiments.comparisons.placements import anchored_model
from experiments.comparisons.traces import bundled_trace
from expert_sched.metrics import DEFAULT_EXECUTION_MODEL
from moesched_base.atomic import atomic_write_json
from perf_model.batch import BatchShape, MoeFactors, StepTimeModel
from perf_model.presets import preset_model

DEFAULT_SUMMARY = "results/comparisons/full_stack_ep8/summary.json"


def prefill_alone_s(model: StepTimeModel, input_tokens: np.ndarray, moe: MoeFactors) -> np.ndarray:
    """Seconds of a step that prefills one whole prompt and nothing else; shape (n,) from (n,) tokens."""
    return np.array([model.step_seconds(BatchShape(prefill_tokens=int(n), kv_context_tokens=int(n)), moe)
                     for n in input_tokens])


def decode_fixed_point_s(model: StepTimeModel, moe: MoeFactors, rate_per_engine: float, mean_input: float,
                         mean_output: float, iterations: int = 500) -> tuple[float, float]:
    """``(step seconds, decodes per step)`` of a decode-only engine keeping up with ``rate_per_engine``
    requests/s of ``mean_output`` tokens each (contexts of ``mean_input + mean_output / 2`` tokens)."""
    step = model.step_seconds(BatchShape(decode_seqs=1, kv_context_tokens=int(mean_input)), moe)
    decodes = rate_per_engine * mean_output * step
    for _ in range(iterations):
        decodes = rate_per_engine * mean_output * step
        step = model.step_seconds(BatchShape(decode_seqs=max(1, round(decodes)),
                                             kv_context_tokens=int(decodes * (mean_input + mean_output / 2))),
                                  moe)
    return step, decodes


def _field(data: Any, path: str, where: str) -> Any:
    """``data[a][b]...`` for ``path`` "a.b...", or ValueError naming ``where`` and the missing field."""
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            raise ValueError(f"{where}: field {path!r} missing; expected a full_stack summary.json")
        data = data[key]
    return data


def floors(summary: dict[str, Any], where: str) -> list[dict[str, float | str]]:
    """One row per Azure trace of ``summary`` (a full_stack ``summary.json``)."""
    cluster = CLUSTERS[_field(summary, "comparison.cluster", where)]
    engines = int(_field(summary, "comparison.engines", where))
    placements = _field(summary, "comparison.placements", where)
    model = anchored_model(preset_model(cluster.gpu_model),
                           MoeFactors(imbalance=float(_field(placements, "trivial.imbalance", where))))
    perfect = MoeFactors(imbalance=1.0, remote_fraction=min(
        float(_field(p, f"remote_fraction.{DEFAULT_EXECUTION_MODEL}", where)) for p in placements.values()))
    rows = []
    for run in _field(summary, "runs", where):
        trace_name, _, stack = str(run.get("label", "")).partition("/")
        if stack != BASELINE or not trace_name.startswith("azure"):
            continue
        workload = _field(run, "config.workload", where)
        requests = bundled_trace(trace_name).load(int(workload["requests"]))
        inputs = np.array([r.input_tokens for r in requests], dtype=float)
        outputs = np.array([r.output_tokens for r in requests], dtype=float)
        prefill = prefill_alone_s(model, inputs, perfect)
        step, decodes = decode_fixed_point_s(model, perfect, float(workload["rate_rps"]) / engines,
                                             inputs.mean(), outputs.mean())
        floor_ms = 1e3 * (prefill.mean() + step / 2)
        baseline_ms = float(_field(run, "summary.ttft_ms.mean", where))
        rows.append({"trace": trace_name, "rate_rps": float(workload["rate_rps"]), "engines": engines,
                     "prefill_alone_ms": 1e3 * prefill.mean(), "decode_step_ms": 1e3 * step,
                     "decodes_per_step": decodes, "floor_ms": floor_ms, "baseline_ttft_ms": baseline_ms,
                     "floor_over_baseline": floor_ms / baseline_ms})
    if not rows:
        raise ValueError(f"{where}: no '{BASELINE}' run on an Azure trace; expected a full_stack summary.json")
    return rows


def table(rows: list[dict[str, float | str]]) -> str:
    """Markdown table of :func:`floors` rows."""
    lines = ["| trace | rate req/s | prompt alone ms | decode step ms (decodes) | floor ms | vllm TTFT ms "
             "| floor / vllm |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['trace']} | {r['rate_rps']:.2f} | {r['prefill_alone_ms']:.1f} | {r['decode_step_ms']:.1f} "
              f"({r['decodes_per_step']:.0f}) | {r['floor_ms']:.1f} | {r['baseline_ttft_ms']:.1f} | "
              f"{r['floor_over_baseline']:.2f}x |" for r in rows]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--summary", default=DEFAULT_SUMMARY,
                        help=f"full_stack summary.json (default {DEFAULT_SUMMARY})")
    parser.add_argument("--out", default="results/comparisons/ttft_floor.json", help="JSON written here")


def run(args: argparse.Namespace) -> int:
    try:
        summary = json.loads(Path(args.summary).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{args.summary}: not JSON ({exc.msg} at line {exc.lineno})") from None
    rows = floors(summary, args.summary)
    print(table(rows))
    atomic_write_json(args.out, {"summary": args.summary, "rows": rows})
    return 0


def main(argv: list[str] | None = None) -> int:
    return script_main("experiments.comparisons.ttft_floor", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
