"""Issue 7's simulated cluster: vanilla vLLM, stock SGLang, each moesched layer alone, all three.

    python -m experiments.comparisons.full_stack [--quick] [--out results/comparisons/full_stack]

Cluster: 4 data-parallel engines, each Qwen3-30B-A3B on 2 x H100 with expert parallelism 2 (step
model preset ``qwen3-30b-a3b-2xh100-ep2``), 1,024 running requests, 8,192 tokens per step, 770,000
KV tokens per engine (2 x (0.9 x 80 GB - 30.5 GB weights - ~3 GB activations) / 96 KiB per token),
prefix caching on, load reports 0.5 s stale. Expert placements are solved on routing statistics
(default: the bundled OLMoE arxiv counts) for the 2 GPUs of an engine (:mod:`.placements`); the
preset's MoE terms are anchored at the trivial placement (the preset was fitted to vLLM without
EPLB), so only a placement better than vLLM's changes step times.

Stacks (same requests, same hardware):

| label | request policy | dispatch | placement | admission |
|---|---|---|---|---|
| vllm | fcfs | round-robin | trivial | first chunk (V1) |
| sglang | fcfs | round-robin | eplb | whole prompt |
| sglang+request | sjf-aging | round-robin | eplb | whole prompt |
| sglang+dispatch | fcfs | scored | eplb | whole prompt |
| sglang+placement | fcfs | round-robin | solver | whole prompt |
| moesched | sjf-aging | scored | solver | whole prompt |
| moesched+budget | sjf-aging + SLO prefill token budget (TPOT 50 ms) | scored | solver | whole prompt |

Capacity per trace: saturating run of the ``vllm`` stack (:mod:`.capacity`); offered load
``--load`` x that. Targets (issue 7) on Azure conv and Mooncake, for moesched and moesched+budget:
mean TTFT <= 0.5x vllm, mean TPOT <= 0.7x vllm, output throughput >= 1.0x vllm.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.comparisons.capacity import saturation_capacity
from experiments.comparisons.cli_common import add_common_arguments, parse_common, progress
from experiments.comparisons.placements import anchored_model, build_placements
from experiments.comparisons.report import (
    Target, comparison_table, ratio_bars, ratio_target, targets_table, write_outputs,
)
from experiments.comparisons.stack import Cluster, Stack, run_stack
from experiments.metrics.runs import RunResult
from experiments.sim.config import EngineConfig
from perf_model.presets import preset_model

GPU_MODEL = "qwen3-30b-a3b-2xh100-ep2"
EP_GPUS = 2
ENGINE = EngineConfig(max_running=1024, max_batched_tokens=8192, kv_capacity_tokens=770_000)
TARGET_TRACES = ("azure-conv", "mooncake")
BASELINE = "vllm"
OURS = "moesched"


def stacks(tpot_budget_ms: float) -> list[Stack]:
    return [
        Stack("vllm", placement="trivial", admit_whole_prompt=False),
        Stack("sglang", placement="eplb"),
        Stack("sglang+request", policy="sjf-aging", placement="eplb"),
        Stack("sglang+dispatch", dispatch="scored", placement="eplb"),
        Stack("sglang+placement", placement="solver"),
        Stack(OURS, policy="sjf-aging", dispatch="scored", placement="solver"),
        Stack(f"{OURS}+budget", policy="sjf-aging", dispatch="scored", placement="solver",
              tpot_budget_ms=tpot_budget_ms),
    ]


def trace_targets(scope: str, runs: dict[str, RunResult]) -> list[Target]:
    base = runs[BASELINE]
    targets = []
    for ours in (runs[OURS], runs[f"{OURS}+budget"]):
        targets += [ratio_target(scope, ours, base, "ttft_ms.mean", 0.5),
                    ratio_target(scope, ours, base, "tpot_ms.mean", 0.7),
                    ratio_target(scope, ours, base, "output_throughput", 1.0, at_least=True)]
    return targets


def placement_table(placements) -> str:
    lines = ["| placement | MoE imbalance (max/mean GPU load) | remote share | balancedness (SGLang) | co-location |",
             "|---|---|---|---|---|"]
    for name, factors in placements.factors.items():
        m = placements.metrics[name]
        lines.append(f"| {name} | {factors.imbalance:.4f} | {factors.remote_fraction:.3f} | "
                     f"{m['balancedness_sglang']:.4f} | {m['colocation']:.3f} |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, traces="azure-conv,azure-code,mooncake", requests=4000, quick_requests=800,
                         out="results/comparisons/full_stack")
    parser.set_defaults(slo_ttft_ms=2000.0)
    parser.add_argument("--engines", type=int, default=None, help="data-parallel engines (default 4; 2 with --quick)")
    parser.add_argument("--tpot-budget-ms", type=float, default=50.0,
                        help="TPOT SLO of the request layer's prefill token budget (ms)")
    parser.add_argument("--routing-stats", default="data/routing/olmoe_routing_counts.npz",
                        help="routing statistics the placements are solved and evaluated on")
    parser.add_argument("--routing-domain", default="arxiv", help="domain of a bundled routing file")
    parser.add_argument("--num-redundant", type=int, default=0,
                        help="redundant expert replicas of eplb and solver (SGLang's default: 0)")
    parser.add_argument("--solve-time-s", type=float, default=30.0, help="solver time limit (s)")
    parser.add_argument("--placement", help="solver placement JSON from 'moesched place' (skips solving)")


def run(args: argparse.Namespace) -> int:
    traces, n_requests, n_capacity, slo = parse_common(args)
    args.engines = args.engines or (2 if args.quick else 4)
    if args.engines < 1 or args.tpot_budget_ms <= 0 or args.solve_time_s <= 0:
        raise ValueError("--engines: expected >= 1; --tpot-budget-ms and --solve-time-s: expected > 0")
    out = Path(args.out)
    placements = build_placements(args.routing_stats, args.routing_domain, EP_GPUS, args.num_redundant,
                                  args.solve_time_s, args.placement)
    model = anchored_model(preset_model(GPU_MODEL), placements.factors["trivial"])
    cluster = Cluster(engines=args.engines, engine=ENGINE, model=model, model_name=model.name,
                      placements=placements.factors)
    todo = stacks(args.tpot_budget_ms)
    all_runs: list[RunResult] = []
    per_trace: dict[str, list[RunResult]] = {}
    capacities, targets, sections = {}, [], []
    with progress(len(traces) * (len(todo) + 1), args.no_progress, "full stack") as bar:
        for trace in traces:
            capacity = saturation_capacity(todo[0], cluster, trace.load(n_requests), n_capacity)
            bar.update()
            rate = args.load * capacity.rate_rps
            capacities[trace.name] = {**capacity.to_dict(), "offered_rate_rps": rate, "load": args.load}
            print(f"{trace.name}: capacity {capacity.rate_rps:.2f} req/s ({BASELINE}, saturating run of "
                  f"{capacity.requests} requests); offered {rate:.2f} req/s = {args.load:g} x capacity", file=sys.stderr)
            requests = trace.load(n_requests, rate)
            workload = {"trace": trace.name, "requests": len(requests), "rate_rps": rate, "load": args.load}
            runs: dict[str, RunResult] = {}
            for stack in todo:
                runs[stack.label] = run_stack(stack, cluster, requests, slo, workload)
                bar.update()
            if trace.name in TARGET_TRACES:
                targets += trace_targets(trace.name, runs)
            per_trace[trace.name] = list(runs.values())
            sections.append(f"### {trace.name}: {len(requests)} requests at {rate:.2f} req/s "
                            f"({args.load:g} x capacity {capacity.rate_rps:.2f} req/s)\n\n"
                            + comparison_table(list(runs.values()), runs[BASELINE]))
            all_runs += [RunResult(f"{trace.name}/{r.label}", r.config, r.summary, r.requests) for r in runs.values()]
    ratio_bars(per_trace, BASELINE, out / "ratios.png")
    markdown = "\n\n".join([
        f"# Full stack, simulated ({args.engines} engines x {GPU_MODEL}, load {args.load:g})",
        f"SLO attainment: TTFT <= {slo.ttft_ms:g} ms and TPOT <= {slo.tpot_ms:g} ms. Request-layer token "
        f"budget: TPOT SLO {args.tpot_budget_ms:g} ms.",
        f"## Placements ({placements.source}, {EP_GPUS} GPUs, {args.num_redundant} redundant)",
        placement_table(placements), "## Targets (issue 7)", targets_table(targets), *sections,
        "![ratios](ratios.png)"]) + "\n"
    comparison = {
        "capacities": capacities, "targets": [t.to_dict() for t in targets], "gpu_model": model.name,
        "engines": args.engines, "quick": args.quick, "routing_stats": placements.source,
        "placements": {name: {"imbalance": f.imbalance, "remote_fraction": f.remote_fraction,
                              "metrics": placements.metrics[name]} for name, f in placements.factors.items()},
        "solve_seconds": placements.solve_seconds,
    }
    write_outputs(out, all_runs, comparison, markdown)
    print(markdown)
    print(f"wrote {out}/runs.json, summary.json, report.md and ratios.png", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.comparisons.full_stack",
                                     description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
