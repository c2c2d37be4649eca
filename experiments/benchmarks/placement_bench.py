"""Expert-placement benchmark: CP-SAT solver versus DeepSeek's EPLB.

1. OLMoE (bundled data, 3-layer chain 0 -> 7 -> 15), every domain, (G, R) in (8, 0), (8, 8),
   (16, 16): balancedness, co-location, solve time (wall-clock budget); plus a placement solved on
   one domain and evaluated on the others (robustness).
2. DeepSeek-V3 scale: 58 MoE layers x 256 experts, top-8, synthetic routing fitted to OLMoE
   (``expert_sched.synthetic``), on (G, N, R) = (64, 8, 64) and (32, 4, 32) with 8 expert groups
   (hierarchical EPLB, as SGLang's ``auto`` picks it); the co-location objective on both, and the
   fan-out and combined objectives on (64, 8, 64).
3. Ablation of the graph-partitioning seed, with a deterministic CP-SAT budget (one worker, fixed
   seed) so that the comparison does not depend on the machine's load: OLMoE G=8 R=8 in every
   domain and DeepSeek-V3 scale G=64, each with and without the seed.

The host's 1-minute load average is recorded before and after each part (the machine is shared).

Usage: python experiments/benchmarks/placement_bench.py [--olmoe-time 55] [--dsv3-time 110]
       [--ablation-olmoe-det 20] [--ablation-dsv3-det 100] [--skip-olmoe] [--skip-dsv3]
       [--skip-ablation] [--out results/placement_bench.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

from expert_sched.metrics import evaluate
from expert_sched.solver import SolverOptions, solve_placement
from expert_sched.stats import RoutingStats, load_stats
from expert_sched.synthetic import fit_to_reference, synthetic_stats
from moesched_base.atomic import atomic_write_json

OLMOE = "data/routing/olmoe_routing_counts.npz"
DOMAINS = ("arxiv", "book", "c4")
DSV3_LAYOUTS = ((64, 8, 64), (32, 4, 32))


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _row(name: str, stats: RoutingStats, gpus: int, redundant: int, nodes: int = 1,
         num_groups: int | None = None, **options) -> tuple[dict, object]:
    """Solve one case; the row (metrics of solution and EPLB, seconds, gap, start) and the result."""
    load_before, tick, cpu = _load(), time.monotonic(), time.process_time()
    result = solve_placement(stats, gpus, redundant, nodes, num_groups, SolverOptions(**options))
    elapsed, cpu = time.monotonic() - tick, time.process_time() - cpu
    row = {"case": name, "seconds": round(elapsed, 1), "cpu_seconds": round(cpu, 1), "gap": round(result.gap, 4),
           "start": result.start, "objective": result.objective, "bound": result.bound,
           "options": {k: v for k, v in options.items()}, "load_before": load_before,
           "solution": evaluate(result.placement, stats), "eplb": evaluate(result.eplb, stats)}
    return row, result


def olmoe(time_limit: float, tolerance: float) -> tuple[list[dict], list[dict]]:
    rows, robustness = [], []
    for domain in DOMAINS:
        stats = load_stats(OLMOE, domain)
        for gpus, redundant in ((8, 0), (8, 8), (16, 16)):
            row, result = _row(f"olmoe {domain} G={gpus} R={redundant}", stats, gpus, redundant,
                               time_limit=time_limit, balance_tolerance=tolerance)
            rows.append(row)
            if (gpus, redundant) == (8, 8):
                for other in DOMAINS:
                    if other != domain:
                        other_stats = load_stats(OLMOE, other)
                        robustness.append({"solved_on": domain, "evaluated_on": other, "G": gpus, "R": redundant,
                                           "solution": evaluate(result.placement, other_stats),
                                           "eplb_of_solved_domain": evaluate(result.eplb, other_stats)})
    return rows, robustness


def dsv3_stats() -> tuple[RoutingStats, dict]:
    """58 x 256 top-8 synthetic routing (8192 tokens) fitted to OLMoE, and the fit."""
    model, achieved = fit_to_reference(256, 8)
    model = dataclasses.replace(model, num_layers=58)
    fit = {"skew_sigma": model.skew_sigma, "affinity_beta": model.affinity_beta, "num_topics": model.num_topics,
           "topic_persistence": model.topic_persistence, "achieved": achieved}
    return synthetic_stats(model, num_tokens=8192), fit


def dsv3(stats: RoutingStats, time_limit: float) -> list[dict]:
    rows = []
    for gpus, nodes, redundant in DSV3_LAYOUTS:
        objectives = ("colocation", "fanout", "both") if gpus == 64 else ("colocation",)
        for objective in objectives:
            row, _ = _row(f"dsv3 G={gpus} N={nodes} R={redundant} {objective}", stats, gpus, redundant, nodes,
                          num_groups=8, time_limit=time_limit, objective=objective)
            rows.append(row)
    return rows


def ablation(dsv3: RoutingStats | None, olmoe_det: float, dsv3_det: float) -> list[dict]:
    """With and without the graph seed, deterministic budgets (reproducible on any machine)."""
    cases = [(f"olmoe {d} G=8 R=8", load_stats(OLMOE, d), 8, 8, 1, None, olmoe_det) for d in DOMAINS]
    if dsv3 is not None:
        cases.append(("dsv3 G=64 N=8 R=64", dsv3, 64, 64, 8, 8, dsv3_det))
    rows = []
    for name, stats, gpus, redundant, nodes, groups, det in cases:
        for seeded in (False, True):
            row, _ = _row(f"{name} det={det:g} {'graph seed' if seeded else 'no seed'}", stats, gpus, redundant,
                          nodes, groups, deterministic_time=det, graph_seed=seeded)
            rows.append(row)
    return rows


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def print_table(rows: list[dict]) -> None:
    print(f"{'case':<40}{'bal eplb':>9}{'bal ours':>9}{'colo eplb':>10}{'colo ours':>10}{'x':>6}"
          f"{'pair eplb':>10}{'pair ours':>10}{'fan eplb':>9}{'fan ours':>9}{'s':>7}{'cpu s':>7}{'gap':>7}"
          f"  start")
    for r in rows:
        e, o = r["eplb"], r["solution"]
        ratio = o["colocation"] / e["colocation"] if e["colocation"] else float("nan")
        print(f"{r['case']:<40}{e['balancedness_sglang']:>9.4f}{o['balancedness_sglang']:>9.4f}"
              f"{e['colocation']:>10.4f}{o['colocation']:>10.4f}{ratio:>6.2f}"
              f"{_fmt(e['pair_colocation']):>10}{_fmt(o['pair_colocation']):>10}"
              f"{_fmt(e['normal_cross_gpu_per_token']):>9}{_fmt(o['normal_cross_gpu_per_token']):>9}"
              f"{r['seconds']:>7.1f}{r['cpu_seconds']:>7.1f}{r['gap']:>7.3f}  {r['start']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--olmoe-time", type=float, default=55.0)
    parser.add_argument("--olmoe-tolerance", type=float, default=0.004,
                        help="per-layer balancedness loss allowed versus EPLB on OLMoE (target: 0.005)")
    parser.add_argument("--dsv3-time", type=float, default=110.0)
    parser.add_argument("--ablation-olmoe-det", type=float, default=20.0, help="deterministic budget, OLMoE")
    parser.add_argument("--ablation-dsv3-det", type=float, default=100.0, help="deterministic budget, DSV3")
    parser.add_argument("--skip-olmoe", action="store_true")
    parser.add_argument("--skip-dsv3", action="store_true")
    parser.add_argument("--skip-ablation", action="store_true")
    parser.add_argument("--out", default="results/placement_bench.json")
    args = parser.parse_args()
    result: dict = {"olmoe_time_limit": args.olmoe_time, "olmoe_tolerance": args.olmoe_tolerance,
                    "dsv3_time_limit": args.dsv3_time, "cpus": os.cpu_count(), "load_at_start": _load()}
    rows: list[dict] = []
    if not args.skip_olmoe:
        result["olmoe"], result["robustness"] = olmoe(args.olmoe_time, args.olmoe_tolerance)
        rows += result["olmoe"]
    stats = None
    if not args.skip_dsv3:
        stats, result["dsv3_fit"] = dsv3_stats()
        result["dsv3"] = dsv3(stats, args.dsv3_time)
        rows += result["dsv3"]
    if not args.skip_ablation:
        result["ablation"] = ablation(stats, args.ablation_olmoe_det, args.ablation_dsv3_det)
        rows += result["ablation"]
    result["load_at_end"] = _load()
    print_table(rows)
    for r in result.get("robustness", []):
        print(f"solved on {r['solved_on']:<6} evaluated on {r['evaluated_on']:<6}: colocation "
              f"{r['solution']['colocation']:.4f} (EPLB {r['eplb_of_solved_domain']['colocation']:.4f}), "
              f"balancedness {r['solution']['balancedness_sglang']:.4f} "
              f"(EPLB {r['eplb_of_solved_domain']['balancedness_sglang']:.4f})")
    print(f"1-minute load average: {result['load_at_start']} at start, {result['load_at_end']} at end "
          f"({result['cpus']} CPUs)")
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
