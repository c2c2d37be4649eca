"""Issue 4's simulator must-show: request policies on the Azure traces at ~0.9 of capacity.

    python -m experiments.comparisons.request_layer [--quick] [--out results/comparisons/request_layer]

Per trace, on one simulated engine (``qwen3-30b-a3b-h100`` step model, 256 running, 8,192 tokens
per step, 160,000 KV tokens, round robin is moot): find FCFS's capacity (:mod:`.capacity`),
replay the trace at ``--load`` x capacity and run, on the same requests, FCFS (vLLM/SGLang
default), SGLang's hrrn, vLLM's sjf, sjf-aging (ours, the policy's defaults), sjf-aging with the
SLO-aware prefill token budget, and sjf-aging over a sweep of aging rates. Targets (issue 4):
sjf-aging's mean TTFT <= 0.5x FCFS and <= 0.8x hrrn and vllm-sjf; P99 TTFT <= 1.0x FCFS; mean
TPOT <= 1.05x FCFS. Prints the tables, writes ``runs.json``, ``summary.json``, ``report.md`` and
plots under ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.comparisons.cli_common import add_common_arguments, parse_common, progress, replays, script_main
from experiments.comparisons.report import (
    Target, comparison_table, metric, publish, ratio_bars, ratio_target, sweep_plot, targets_table, trace_runs,
)
from experiments.comparisons.stack import Cluster, Stack, run_stack
from experiments.metrics.runs import RunResult
from experiments.sim.config import EngineConfig
from perf_model.model_file import resolve_model

GPU_MODEL = "qwen3-30b-a3b-h100"
OURS = "sjf-aging"
AGING_RATES = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.5)
QUICK_AGING_RATES = (0.0, 0.01, 0.5)


def stacks(tpot_budget_ms: float, aging_rates: tuple[float, ...]) -> list[Stack]:
    """The compared policies, then the aging sweep (labels ``aging=<rate>``)."""
    main = [Stack("fcfs"), Stack("hrrn", policy="hrrn"), Stack("vllm-sjf", policy="vllm-sjf"),
            Stack(OURS, policy="sjf-aging"),
            Stack(f"{OURS}+budget", policy="sjf-aging", tpot_budget_ms=tpot_budget_ms)]
    sweep = [Stack(f"aging={a:g}", policy="sjf-aging", policy_options={"aging_rate": a}) for a in aging_rates]
    return main + sweep


def trace_targets(scope: str, runs: dict[str, RunResult]) -> list[Target]:
    ours, fcfs = runs[OURS], runs["fcfs"]
    return [ratio_target(scope, ours, fcfs, "ttft_ms.mean", 0.5),
            ratio_target(scope, ours, runs["hrrn"], "ttft_ms.mean", 0.8),
            ratio_target(scope, ours, runs["vllm-sjf"], "ttft_ms.mean", 0.8),
            ratio_target(scope, ours, fcfs, "ttft_ms.p99", 1.0),
            ratio_target(scope, ours, fcfs, "tpot_ms.mean", 1.05)]


def sweep_points(runs: dict[str, RunResult], aging_rates: tuple[float, ...]) -> list[dict[str, float]]:
    """Mean / P99 / max TTFT (ms) per aging rate."""
    points = []
    for a in aging_rates:
        run = runs[f"aging={a:g}"]
        max_ttft = max((r.ttft_ms for r in run.requests if r.ttft_ms is not None), default=0.0)
        points.append({"aging_rate": a, "ttft_mean_ms": metric(run, "ttft_ms.mean") or 0.0,
                       "ttft_p99_ms": metric(run, "ttft_ms.p99") or 0.0, "ttft_max_ms": max_ttft,
                       "tpot_mean_ms": metric(run, "tpot_ms.mean") or 0.0})
    return points


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, traces="azure-conv,azure-code", requests=4000, quick_requests=600,
                         out="results/comparisons/request_layer")
    parser.add_argument("--engines", type=int, default=1, help="engines (round robin) per run")
    parser.add_argument("--tpot-budget-ms", type=float, default=50.0,
                        help="TPOT SLO of the token-budget variant (ms)")


def run(args: argparse.Namespace) -> int:
    traces, n_requests, n_capacity, slo = parse_common(args)
    if args.engines < 1 or args.tpot_budget_ms <= 0:
        raise ValueError("--engines: expected >= 1 and --tpot-budget-ms > 0")
    aging_rates = QUICK_AGING_RATES if args.quick else AGING_RATES
    cluster = Cluster(engines=args.engines, engine=EngineConfig(), model=resolve_model(GPU_MODEL),
                      model_name=GPU_MODEL)
    todo = stacks(args.tpot_budget_ms, aging_rates)
    out = Path(args.out)
    all_runs: list[RunResult] = []
    per_trace: dict[str, list[RunResult]] = {}
    capacities, targets, sweeps, sections = {}, [], {}, []
    with progress(len(traces) * (len(todo) + 1), args.no_progress, "request layer") as bar:
        recorded = ((trace.name, trace.load(n_requests)) for trace in traces)
        for replay in replays(recorded, todo[0], cluster, n_capacity, args.load, bar):
            name, offered, requests, workload = replay.trace, replay.offered, replay.requests, replay.workload()
            capacities[name] = offered.to_dict()
            runs: dict[str, RunResult] = {}
            for stack in todo:
                runs[stack.label] = run_stack(stack, cluster, requests, slo, workload)
                bar.update()
            targets += trace_targets(name, runs)
            sweeps[name] = sweep_points(runs, aging_rates)
            main = [runs[s.label] for s in todo if not s.label.startswith("aging=")]
            per_trace[name] = main
            sections.append(offered.heading(name, len(requests)) + "\n\n"
                            + comparison_table(list(runs.values()), runs["fcfs"]))
            all_runs += trace_runs(name, runs.values())
            sweep_plot(sweeps[name], "aging_rate", (("mean TTFT", "ttft_mean_ms"), ("P99 TTFT", "ttft_p99_ms"),
                                                          ("max TTFT", "ttft_max_ms")),
                       f"sjf-aging aging-rate sweep, {name}", out / f"aging_sweep_{name}.png")
    ratio_bars(per_trace, "fcfs", out / "ratios.png")
    markdown = "\n\n".join([
        f"# Request layer, simulated ({GPU_MODEL}, {args.engines} engine(s), load {args.load:g})",
        "SLO attainment: TTFT <= %g ms and TPOT <= %g ms." % (slo.ttft_ms, slo.tpot_ms),
        "## Targets (issue 4)", targets_table(targets), *sections,
        "![ratios](ratios.png)", *[f"![sweep {t.name}](aging_sweep_{t.name}.png)" for t in traces]]) + "\n"
    publish(out, all_runs, {"capacities": capacities, "targets": [t.to_dict() for t in targets],
                            "aging_sweeps": sweeps, "gpu_model": GPU_MODEL, "engines": args.engines,
                            "quick": args.quick}, markdown)
    return 0


def main(argv: list[str] | None = None) -> int:
    return script_main("experiments.comparisons.request_layer", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
