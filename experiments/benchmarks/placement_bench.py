"""Expert-placement benchmark: CP-SAT solver versus DeepSeek's EPLB.

1. OLMoE (bundled data, 3-layer chain 0 -> 7 -> 15), every domain, (G, R) in (8, 0), (8, 8),
   (16, 16): balancedness, co-location, solve time; plus a placement solved on one domain and
   evaluated on the others (robustness).
2. DeepSeek-V3 scale: 58 MoE layers x 256 experts, top-8, synthetic routing fitted to OLMoE
   (``expert_sched.synthetic``), on (G, N, R) = (64, 8, 64) and (32, 4, 32) with 8 expert groups
   (hierarchical EPLB, as SGLang's ``auto`` picks it).

Usage: python experiments/benchmarks/placement_bench.py [--olmoe-time 60] [--dsv3-time 110]
       [--skip-dsv3] [--out results/placement_bench.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from expert_sched.metrics import evaluate
from expert_sched.solver import SolverOptions, solve_placement
from expert_sched.stats import load_stats
from expert_sched.synthetic import fit_to_reference, synthetic_stats
from moesched_base.atomic import atomic_write_json

OLMOE = "data/routing/olmoe_routing_counts.npz"
DOMAINS = ("arxiv", "book", "c4")


def _row(name: str, result, stats, elapsed: float) -> dict:
    ours, eplb = evaluate(result.placement, stats), evaluate(result.eplb, stats)
    return {"case": name, "seconds": round(elapsed, 1), "gap": round(result.gap, 4),
            "objective": result.objective, "bound": result.bound, "solution": ours, "eplb": eplb}


def olmoe(time_limit: float, tolerance: float) -> tuple[list[dict], list[dict]]:
    rows, robustness = [], []
    for domain in DOMAINS:
        stats = load_stats(OLMOE, domain)
        for gpus, redundant in ((8, 0), (8, 8), (16, 16)):
            tick = time.monotonic()
            result = solve_placement(stats, gpus, redundant, options=SolverOptions(
                time_limit=time_limit, balance_tolerance=tolerance))
            rows.append(_row(f"olmoe {domain} G={gpus} R={redundant}", result, stats, time.monotonic() - tick))
            if (gpus, redundant) == (8, 8):
                for other in DOMAINS:
                    if other != domain:
                        other_stats = load_stats(OLMOE, other)
                        robustness.append({"solved_on": domain, "evaluated_on": other, "G": gpus, "R": redundant,
                                           "solution": evaluate(result.placement, other_stats),
                                           "eplb_of_solved_domain": evaluate(result.eplb, other_stats)})
    return rows, robustness


def dsv3(time_limit: float) -> tuple[list[dict], dict]:
    model, achieved = fit_to_reference(256, 8)
    model = dataclasses.replace(model, num_layers=58)
    stats = synthetic_stats(model, num_tokens=8192)
    fit = {"skew_sigma": model.skew_sigma, "affinity_beta": model.affinity_beta, "num_topics": model.num_topics,
           "topic_persistence": model.topic_persistence, "achieved": achieved}
    rows = []
    for gpus, nodes, redundant in ((64, 8, 64), (32, 4, 32)):
        tick = time.monotonic()
        result = solve_placement(stats, gpus, redundant, nodes, num_groups=8,
                                 options=SolverOptions(time_limit=time_limit))
        rows.append(_row(f"dsv3 58x256 G={gpus} N={nodes} R={redundant}", result, stats, time.monotonic() - tick))
    return rows, fit


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def print_table(rows: list[dict]) -> None:
    print(f"{'case':<34}{'bal eplb':>9}{'bal ours':>9}{'colo eplb':>10}{'colo ours':>10}{'x':>6}"
          f"{'fan-out eplb':>13}{'fan-out ours':>13}{'s':>7}{'gap':>7}")
    for r in rows:
        e, o = r["eplb"], r["solution"]
        ratio = o["colocation"] / e["colocation"] if e["colocation"] else float("nan")
        print(f"{r['case']:<34}{e['balancedness_sglang']:>9.4f}{o['balancedness_sglang']:>9.4f}"
              f"{e['colocation']:>10.4f}{o['colocation']:>10.4f}{ratio:>6.2f}"
              f"{_fmt(e['normal_cross_gpu_per_token']):>13}{_fmt(o['normal_cross_gpu_per_token']):>13}"
              f"{r['seconds']:>7.1f}{r['gap']:>7.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--olmoe-time", type=float, default=55.0)
    parser.add_argument("--olmoe-tolerance", type=float, default=0.004,
                        help="per-layer balancedness loss allowed versus EPLB on OLMoE (target: 0.005)")
    parser.add_argument("--dsv3-time", type=float, default=110.0)
    parser.add_argument("--skip-olmoe", action="store_true")
    parser.add_argument("--skip-dsv3", action="store_true")
    parser.add_argument("--out", default="results/placement_bench.json")
    args = parser.parse_args()
    result: dict = {"olmoe_time_limit": args.olmoe_time, "olmoe_tolerance": args.olmoe_tolerance,
                    "dsv3_time_limit": args.dsv3_time}
    rows: list[dict] = []
    if not args.skip_olmoe:
        result["olmoe"], result["robustness"] = olmoe(args.olmoe_time, args.olmoe_tolerance)
        rows += result["olmoe"]
    if not args.skip_dsv3:
        result["dsv3"], result["dsv3_fit"] = dsv3(args.dsv3_time)
        rows += result["dsv3"]
    print_table(rows)
    for r in result.get("robustness", []):
        print(f"solved on {r['solved_on']:<6} evaluated on {r['evaluated_on']:<6}: colocation "
              f"{r['solution']['colocation']:.4f} (EPLB {r['eplb_of_solved_domain']['colocation']:.4f}), "
              f"balancedness {r['solution']['balancedness_sglang']:.4f} "
              f"(EPLB {r['eplb_of_solved_domain']['balancedness_sglang']:.4f})")
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
