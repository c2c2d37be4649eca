"""Issue 4's simulator must-show: request policies on the Azure traces at ~0.9 of capacity.

    python -m experiments.comparisons.request_layer [--quick] [--out results/comparisons/request_layer]

Per trace, on one simulated engine (``qwen3-30b-a3b-h100`` step model, 256 running, 8,192 tokens
per step, 160,000 KV tokens), on the same replayed requests:

- SGLang 0.5.23 step forming (``EngineConfig.prefill_order="policy"``: prefill batches taken
  from the waiting queue in policy order; SGLang's admission headroom for future decode tokens,
  ``decode_reservation``, unless ``--no-decode-reservation``) launched with
  ``--enable-mixed-chunk`` (decodes join prefill steps), the setting this project's launch uses:
  FCFS (SGLang's default policy; the baseline of every ratio), SGLang's hrrn and lpm, sjf-aging
  (ours, the policy's defaults), ours with the SLO-aware prefill token budget, and sweeps of ours
  over the aging rate and the decode weight of the job size;
- stock SGLang (no mixed chunk: decodes wait for every prefill step): FCFS, hrrn and ours, so
  the gain of the flag alone is visible;
- vLLM V1 step forming (``prefill_order="admission"``, first-chunk admission): FCFS, vLLM's sjf,
  and ours (the same policy on vLLM's engine, to separate the policy from the engine); and vLLM's
  sjf on the SGLang engine above (policy against policy on one engine);
- with SGLang's admission headroom learnt from finished outputs (``learnt_headroom``,
  :mod:`request_sched.headroom`, the plugin's ``[headroom]``): ours, the whole request layer
  (ours + token budget + learnt headroom) and FCFS with the learnt headroom (the headroom alone).

Capacity (:mod:`.capacity`) is SGLang FCFS's with mixed chunk; stock SGLang's and vLLM FCFS's own
capacities are measured too and reported. Targets (issue 4), for sjf-aging and for the whole
request layer: mean TTFT <= 0.5x FCFS and <= 0.8x hrrn and vllm-sjf; P99 TTFT <= 1.0x FCFS; mean
TPOT <= 1.05x FCFS; the same ratios
against stock SGLang and on vLLM's engine are reported beside them. Prints the tables, writes
``runs.json``, ``summary.json``, ``report.md`` and plots under ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.comparisons.capacity import saturation_capacity
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
BASELINE = "fcfs"
#: suffix of the stock-SGLang rows (no ``--enable-mixed-chunk``)
STOCK = "@no-mixed"
AGING_RATES = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.5)
QUICK_AGING_RATES = (0.0, 0.01, 0.5)
DECODE_WEIGHTS = (0.0, 0.1, 0.2, 0.5, 1.0)
#: vLLM V1's engine: admission order, admission when the first chunk fits
VLLM = {"prefill_order": "admission", "admit_whole_prompt": False}
#: suffix of ours on vLLM's engine
ON_VLLM = "@vllm"
#: vLLM's sjf policy on the SGLang engine (mixed chunk) that ours runs on
VLLM_SJF_ON_SGLANG = "vllm-sjf@sglang"
#: suffix of the rows whose SGLang admission headroom is learnt (request_sched.headroom)
HEADROOM = "+headroom"
#: the whole request layer: sjf-aging, the SLO-aware token budget and the learnt headroom
FULL_LAYER = f"{OURS}+budget{HEADROOM}"


def stacks(tpot_budget_ms: float, aging_rates: tuple[float, ...], decode_reservation: bool = True) -> list[Stack]:
    """The compared stacks (SGLang FCFS with mixed chunk first: capacity and ratio baseline), then
    the sweeps of ours over a policy option (labels ``aging_rate=<rate>``, ``decode_weight=<w>``).
    ``decode_reservation``: SGLang's admission headroom on every SGLang stack."""
    mixed = {"prefill_order": "policy", "mixed_chunk": True, "decode_reservation": decode_reservation}
    stock = {**mixed, "mixed_chunk": False}
    main = [Stack(BASELINE, **mixed), Stack("hrrn", policy="hrrn", **mixed),
            Stack("lpm", policy="lpm", **mixed), Stack(OURS, policy="sjf-aging", **mixed),
            Stack(f"{OURS}+budget", policy="sjf-aging", tpot_budget_ms=tpot_budget_ms, **mixed),
            Stack(BASELINE + STOCK, **stock), Stack("hrrn" + STOCK, policy="hrrn", **stock),
            Stack(OURS + STOCK, policy="sjf-aging", **stock),
            Stack("vllm-fcfs", **VLLM), Stack("vllm-sjf", policy="vllm-sjf", **VLLM),
            Stack(OURS + ON_VLLM, policy="sjf-aging", **VLLM),
            Stack(VLLM_SJF_ON_SGLANG, policy="vllm-sjf", **mixed)]
    if decode_reservation:  # the learnt headroom clips that reservation: ours with it, and FCFS with it
        main += [Stack(OURS + HEADROOM, policy="sjf-aging", learnt_headroom=True, **mixed),
                 Stack(FULL_LAYER, policy="sjf-aging", tpot_budget_ms=tpot_budget_ms,
                       learnt_headroom=True, **mixed),
                 Stack(BASELINE + HEADROOM, learnt_headroom=True, **mixed)]
    aging = [Stack(f"aging_rate={a:g}", policy="sjf-aging", policy_options={"aging_rate": a}, **mixed)
             for a in aging_rates]
    weights = [Stack(f"decode_weight={w:g}", policy="sjf-aging", policy_options={"decode_weight": w}, **mixed)
               for w in DECODE_WEIGHTS]
    return main + aging + weights


def step_forming(stack: Stack) -> str:
    """How ``stack``'s engine forms steps, for the tables."""
    if stack.prefill_order == "admission":
        return "vLLM V1 (first-chunk admission)"
    forming = "SGLang, mixed chunk" if stack.mixed_chunk else "SGLang stock (no mixed chunk)"
    return forming + (", decode reservation" if stack.decode_reservation else ", prompt-room admission")


def forming_table(compared: list[Stack]) -> str:
    """Markdown table: each compared stack's policy and step forming (sweeps: as ``sjf-aging``)."""
    lines = ["| config | policy | step forming |", "|---|---|---|"]
    lines += [f"| {s.label} | {s.policy} | {step_forming(s)} |" for s in compared]
    return "\n".join(lines)


def trace_targets(scope: str, runs: dict[str, RunResult], ours_label: str = OURS) -> list[Target]:
    """The issue's five targets for the stack ``ours_label`` (sjf-aging alone, or the whole
    request layer: sjf-aging + SLO token budget + learnt headroom)."""
    ours, fcfs = runs[ours_label], runs[BASELINE]
    return [ratio_target(scope, ours, fcfs, "ttft_ms.mean", 0.5),
            ratio_target(scope, ours, runs["hrrn"], "ttft_ms.mean", 0.8),
            ratio_target(scope, ours, runs["vllm-sjf"], "ttft_ms.mean", 0.8),
            ratio_target(scope, ours, fcfs, "ttft_ms.p99", 1.0),
            ratio_target(scope, ours, fcfs, "tpot_ms.mean", 1.05)]


def other_baseline_targets(scope: str, runs: dict[str, RunResult]) -> list[Target]:
    """The issue's FCFS targets against stock SGLang's launch (FCFS, no mixed chunk: what the launch
    command, policy + ``--enable-mixed-chunk``, gains over it), and on vLLM's engine (ours there
    against vLLM's FCFS and sjf: the policies alone, same engine), and ours and the whole layer
    against vLLM's sjf policy on ours' own (SGLang) engine."""
    ours, stock = runs[OURS], runs[BASELINE + STOCK]
    on_vllm, vllm_fcfs = runs[OURS + ON_VLLM], runs["vllm-fcfs"]
    return [ratio_target(scope, ours, stock, "ttft_ms.mean", 0.5), ratio_target(scope, ours, stock, "ttft_ms.p99", 1.0),
            ratio_target(scope, ours, stock, "tpot_ms.mean", 1.05),
            ratio_target(scope, on_vllm, vllm_fcfs, "ttft_ms.mean", 0.5),
            ratio_target(scope, on_vllm, runs["vllm-sjf"], "ttft_ms.mean", 0.8),
            ratio_target(scope, on_vllm, vllm_fcfs, "ttft_ms.p99", 1.0),
            ratio_target(scope, on_vllm, vllm_fcfs, "tpot_ms.mean", 1.05)] + [
            ratio_target(scope, runs[label], runs[VLLM_SJF_ON_SGLANG], "ttft_ms.mean", 0.8)
            for label in (OURS, FULL_LAYER) if label in runs]


def sweep_points(runs: dict[str, RunResult], option: str, values: tuple[float, ...]) -> list[dict[str, float]]:
    """Mean / P99 / max TTFT and mean TPOT (ms) of the sweep runs ``<option>=<value>``."""
    points = []
    for v in values:
        run = runs[f"{option}={v:g}"]
        max_ttft = max((r.ttft_ms for r in run.requests if r.ttft_ms is not None), default=0.0)
        points.append({option: v, "ttft_mean_ms": metric(run, "ttft_ms.mean") or 0.0,
                       "ttft_p99_ms": metric(run, "ttft_ms.p99") or 0.0, "ttft_max_ms": max_ttft,
                       "tpot_mean_ms": metric(run, "tpot_ms.mean") or 0.0})
    return points


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, traces="azure-conv,azure-code", requests=4000, quick_requests=600,
                         out="results/comparisons/request_layer")
    parser.add_argument("--engines", type=int, default=1, help="engines (round robin) per run")
    parser.add_argument("--tpot-budget-ms", type=float, default=50.0,
                        help="TPOT SLO of the token-budget variant (ms)")
    parser.add_argument("--no-decode-reservation", action="store_true",
                        help="SGLang stacks admit when the uncached prompt fits (no headroom for future decode tokens)")


def run(args: argparse.Namespace) -> int:
    traces, n_requests, n_capacity, slo = parse_common(args)
    if args.engines < 1 or args.tpot_budget_ms <= 0:
        raise ValueError("--engines: expected >= 1 and --tpot-budget-ms > 0")
    aging_rates = QUICK_AGING_RATES if args.quick else AGING_RATES
    cluster = Cluster(engines=args.engines, engine=EngineConfig(), model=resolve_model(GPU_MODEL),
                      model_name=GPU_MODEL)
    todo = stacks(args.tpot_budget_ms, aging_rates, not args.no_decode_reservation)
    other_baselines = [s for s in todo if s.label in (BASELINE + STOCK, "vllm-fcfs")]
    out = Path(args.out)
    all_runs: list[RunResult] = []
    per_trace: dict[str, list[RunResult]] = {}
    capacities, other_capacities, targets, vs_other, sweeps, sections = {}, {}, [], [], {}, []
    recorded = {trace.name: trace.load(n_requests) for trace in traces}
    with progress(len(traces) * (len(todo) + 1 + len(other_baselines)), args.no_progress, "request layer") as bar:
        for replay in replays(recorded.items(), todo[0], cluster, n_capacity, args.load, bar):
            name, offered, requests, workload = replay.trace, replay.offered, replay.requests, replay.workload()
            capacities[name] = offered.to_dict()
            other_capacities[name] = {}
            for base in other_baselines:
                other_capacities[name][base.label] = saturation_capacity(base, cluster, recorded[name], n_capacity).to_dict()
                bar.update()
            runs: dict[str, RunResult] = {}
            for stack in todo:
                runs[stack.label] = run_stack(stack, cluster, requests, slo, workload)
                bar.update()
            targets += trace_targets(name, runs)
            if FULL_LAYER in runs:
                targets += trace_targets(name, runs, FULL_LAYER)
            vs_other += other_baseline_targets(name, runs)
            sweeps[name] = {"aging_rate": sweep_points(runs, "aging_rate", aging_rates),
                            "decode_weight": sweep_points(runs, "decode_weight", DECODE_WEIGHTS)}
            main = [runs[s.label] for s in todo if "=" not in s.label]
            per_trace[name] = main
            sections.append(offered.heading(name, len(requests))
                            + "; own capacities: " + ", ".join(f"{label} {c['rate_rps']:.2f} req/s"
                                                               for label, c in other_capacities[name].items())
                            + "\n\n"
                            + comparison_table(list(runs.values()), runs[BASELINE]))
            all_runs += trace_runs(name, runs.values())
            series = (("mean TTFT", "ttft_mean_ms"), ("P99 TTFT", "ttft_p99_ms"), ("max TTFT", "ttft_max_ms"))
            sweep_plot(sweeps[name]["aging_rate"], "aging_rate", series, f"sjf-aging aging-rate sweep, {name}",
                       out / f"aging_sweep_{name}.png")
            sweep_plot(sweeps[name]["decode_weight"], "decode_weight", series,
                       f"sjf-aging decode-weight sweep, {name}", out / f"decode_weight_sweep_{name}.png")
    ratio_bars(per_trace, BASELINE, out / "ratios.png")
    markdown = "\n\n".join([
        f"# Request layer, simulated ({GPU_MODEL}, {args.engines} engine(s), load {args.load:g})",
        "SLO attainment: TTFT <= %g ms and TPOT <= %g ms. Ratios against `fcfs` (SGLang 0.5.23 step "
        "forming with mixed chunk, as this project launches it)." % (slo.ttft_ms, slo.tpot_ms),
        forming_table([s for s in todo if "=" not in s.label]),
        "## Targets (issue 4)", targets_table(targets),
        "Against stock SGLang's launch (FCFS without mixed chunk, same offered rate), ours on "
        "vLLM's engine against vLLM's policies, and ours against vLLM's sjf on the same SGLang engine:", targets_table(vs_other), *sections,
        "![ratios](ratios.png)", *[f"![aging sweep {t.name}](aging_sweep_{t.name}.png)" for t in traces],
        *[f"![decode weight sweep {t.name}](decode_weight_sweep_{t.name}.png)" for t in traces]]) + "\n"
    publish(out, all_runs, {"capacities": capacities, "other_capacities": other_capacities,
                            "decode_reservation": not args.no_decode_reservation,
                            "targets": [t.to_dict() for t in targets],
                            "targets_other_baselines": [t.to_dict() for t in vs_other],
                            "aging_sweeps": {t: v["aging_rate"] for t, v in sweeps.items()},
                            "decode_weight_sweeps": {t: v["decode_weight"] for t, v in sweeps.items()},
                            "step_forming": {s.label: step_forming(s) for s in todo},
                            "gpu_model": GPU_MODEL, "engines": args.engines, "quick": args.quick}, markdown)
    return 0


def main(argv: list[str] | None = None) -> int:
    return script_main("experiments.comparisons.request_layer", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
