"""Expert-placement benchmark: CP-SAT solver versus DeepSeek's EPLB.

1. OLMoE (bundled data, 3-layer chain 0 -> 7 -> 15), every domain, (G, R) in (8, 0), (8, 8),
   (16, 16): balancedness, co-location, seconds; plus the G=8 R=8 placement solved on one domain
   and evaluated on the others (robustness).
2. DeepSeek-V3 scale: 58 MoE layers x 256 experts, top-8, synthetic routing fitted to OLMoE
   (``expert_sched.synthetic``), on (G, N, R) = (64, 8, 64) and (32, 4, 32) with 8 expert groups
   (hierarchical EPLB, as SGLang's ``auto`` picks it); the co-location objective on both, the
   fan-out and combined objectives on (64, 8, 64).

Budgets are CP-SAT deterministic time by default (one worker, fixed seed): the placements are then
the same on any machine at any load, and the CPU seconds of each case show what it costs. With
``--wall-clock`` they are wall-clock seconds with two workers (what ``moesched place --time-limit``
does), and results depend on the load. Every case is one task; ``--jobs J`` runs J in parallel.
The host's 1-minute load average is recorded before each case.

Usage: python experiments/benchmarks/placement_bench.py [--olmoe-budget 20] [--dsv3-budget 30]
       [--wall-clock] [--skip-olmoe] [--skip-dsv3] [--jobs 1]
       [--out results/placement_bench.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from concurrent.futures import ProcessPoolExecutor

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


def dsv3_stats() -> tuple[RoutingStats, dict]:
    """58 x 256 top-8 synthetic routing (8192 tokens) fitted to OLMoE, and the fit."""
    model, achieved = fit_to_reference(256, 8)
    model = dataclasses.replace(model, num_layers=58)
    fit = {"skew_sigma": model.skew_sigma, "affinity_beta": model.affinity_beta, "num_topics": model.num_topics,
           "topic_persistence": model.topic_persistence, "achieved": achieved}
    return synthetic_stats(model, num_tokens=8192), fit


def olmoe_case(domain: str, gpus: int, redundant: int, **options) -> tuple[dict, list[dict]]:
    """One OLMoE case; for G=8 R=8 also the placement evaluated on the other domains."""
    stats = load_stats(OLMOE, domain)
    row, result = _row(f"olmoe {domain} G={gpus} R={redundant}", stats, gpus, redundant, **options)
    robustness = []
    if (gpus, redundant) == (8, 8):
        for other in DOMAINS:
            if other != domain:
                other_stats = load_stats(OLMOE, other)
                robustness.append({"solved_on": domain, "evaluated_on": other, "G": gpus, "R": redundant,
                                   "solution": evaluate(result.placement, other_stats),
                                   "eplb_of_solved_domain": evaluate(result.eplb, other_stats)})
    return row, robustness


def dsv3_case(stats: RoutingStats, gpus: int, nodes: int, redundant: int, label: str,
              **options) -> tuple[dict, list[dict]]:
    row, _ = _row(f"dsv3 G={gpus} N={nodes} R={redundant}{label}", stats, gpus, redundant, nodes,
                  num_groups=8, **options)
    return row, []


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def print_table(rows: list[dict]) -> None:
    print(f"{'case':<46}{'bal eplb':>9}{'bal ours':>9}{'colo eplb':>10}{'colo ours':>10}{'x':>6}"
          f"{'pair eplb':>10}{'pair ours':>10}{'fan eplb':>9}{'fan ours':>9}{'s':>7}{'cpu s':>7}{'gap':>7}"
          f"  start")
    for r in rows:
        e, o = r["eplb"], r["solution"]
        ratio = o["colocation"] / e["colocation"] if e["colocation"] else float("nan")
        print(f"{r['case']:<46}{e['balancedness_sglang']:>9.4f}{o['balancedness_sglang']:>9.4f}"
              f"{e['colocation']:>10.4f}{o['colocation']:>10.4f}{ratio:>6.2f}"
              f"{_fmt(e['pair_colocation']):>10}{_fmt(o['pair_colocation']):>10}"
              f"{_fmt(e['normal_cross_gpu_per_token']):>9}{_fmt(o['normal_cross_gpu_per_token']):>9}"
              f"{r['seconds']:>7.1f}{r['cpu_seconds']:>7.1f}{r['gap']:>7.3f}  {r['start']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--olmoe-budget", type=float, default=20.0,
                        help="per OLMoE case: CP-SAT deterministic time (or seconds with --wall-clock)")
    parser.add_argument("--olmoe-tolerance", type=float, default=0.004,
                        help="per-layer balancedness loss allowed versus EPLB on OLMoE (target: 0.005)")
    parser.add_argument("--dsv3-budget", type=float, default=30.0,
                        help="per DeepSeek-V3-scale case: deterministic time (or seconds with --wall-clock)")
    parser.add_argument("--wall-clock", action="store_true",
                        help="budgets are wall-clock seconds with 2 CP-SAT workers (results then depend on load)")
    parser.add_argument("--skip-olmoe", action="store_true")
    parser.add_argument("--skip-dsv3", action="store_true")
    parser.add_argument("--jobs", type=int, default=1, help="cases run in parallel processes")
    parser.add_argument("--out", default="results/placement_bench.json")
    args = parser.parse_args()

    def budget(amount: float) -> dict:
        return {"time_limit": amount} if args.wall_clock else {"deterministic_time": amount}

    result: dict = {"olmoe_budget": args.olmoe_budget, "olmoe_tolerance": args.olmoe_tolerance,
                    "dsv3_budget": args.dsv3_budget,
                    "wall_clock": args.wall_clock, "jobs": args.jobs,
                    "cpus": os.cpu_count(), "load_at_start": _load()}
    tasks: dict[str, list[tuple]] = {"olmoe": [], "dsv3": []}
    if not args.skip_olmoe:
        for domain in DOMAINS:
            for gpus, redundant in ((8, 0), (8, 8), (16, 16)):
                options = {**budget(args.olmoe_budget), "balance_tolerance": args.olmoe_tolerance}
                tasks["olmoe"].append((olmoe_case, (domain, gpus, redundant), options))
    if not args.skip_dsv3:
        stats, result["dsv3_fit"] = dsv3_stats()
        for gpus, nodes, redundant in DSV3_LAYOUTS:
            for objective in ("colocation", "fanout", "both") if gpus == 64 else ("colocation",):
                options = {**budget(args.dsv3_budget), "objective": objective}
                tasks["dsv3"].append((dsv3_case, (stats, gpus, nodes, redundant, f" {objective}"), options))
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {part: [pool.submit(fn, *a, **kw) for fn, a, kw in items] for part, items in tasks.items()}
        done = {part: [f.result() for f in items] for part, items in futures.items()}
    rows: list[dict] = []
    for part in ("olmoe", "dsv3"):
        if done[part]:
            result[part] = [row for row, _ in done[part]]
            rows += result[part]
    result["robustness"] = [r for _, extra in done["olmoe"] for r in extra]
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
