"""``moesched place``: solve an expert placement and write SGLang's ``--init-expert-location`` file.

Example::

    moesched place --stats data/routing/olmoe_routing_counts.npz --domain arxiv \\
        --num-gpus 8 --num-redundant 8 --time-limit 60 --out placement.json --report report.json
"""

from __future__ import annotations

import argparse
import sys

from moesched_base.atomic import atomic_write_json

from .metrics import evaluate
from .placement import check_layout, read_placement, write_placement
from .solver import OBJECTIVES, SolverOptions, solve_placement
from .stats import load_stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``moesched place``."""
    parser.add_argument("--stats", required=True, help="routing statistics: SGLang recorder dump (.pt), "
                        ".npz or .json with logical_count [+ transitions, coactivation], or a bundled "
                        "data/routing/*_routing_counts.npz")
    parser.add_argument("--domain", help="domain inside a bundled routing file (arxiv, book, c4)")
    parser.add_argument("--num-gpus", type=int, required=True, help="expert-parallel GPUs G")
    parser.add_argument("--num-redundant", type=int, required=True, help="redundant replicas R per layer")
    parser.add_argument("--num-nodes", type=int, default=1, help="nodes N (G divisible by N)")
    parser.add_argument("--num-groups", type=int, default=None,
                        help="expert groups of the model (DeepSeek-V3: 8); EPLB is hierarchical when "
                             "they divide evenly over the nodes, as SGLang's 'auto'")
    parser.add_argument("--time-limit", type=float, default=60.0, help="solver time in seconds")
    parser.add_argument("--deterministic-time", type=float, default=None,
                        help="instead of --time-limit: CP-SAT deterministic time summed over the layer "
                             "solves, with one worker; the same input then gives the same placement on "
                             "any machine (wall time not bounded)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="colocation",
                        help="colocation: consecutive-layer transitions kept on one GPU; fanout: same-layer "
                             "co-activated pairs sharing a GPU (DeepEP normal-mode fan-out; needs "
                             "coactivation); both: the sum of the two shares")
    parser.add_argument("--balance-tolerance", type=float, default=0.0,
                        help="allowed balancedness loss per layer versus EPLB (default 0: no worse)")
    parser.add_argument("--current", help="current placement.json (migration-bounded mode)")
    parser.add_argument("--max-moves", type=int, default=None,
                        help="with --current: at most this many new replicas per GPU and layer")
    parser.add_argument("--expert-bytes", type=int, default=None,
                        help="weight bytes of one expert in one layer, to report replica memory in bytes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="placement JSON to write")
    parser.add_argument("--report", help="report JSON to write (metrics of the solution and of EPLB)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def run(args: argparse.Namespace) -> int:
    """Solve, write the placement (and report) atomically, print a summary."""
    stats = load_stats(args.stats, args.domain)
    check_layout(stats.num_experts, args.num_redundant, args.num_gpus, args.num_nodes)
    if (args.current is None) != (args.max_moves is None):
        raise ValueError("--current and --max-moves go together")
    if args.max_moves is not None and args.max_moves < 0:
        raise ValueError(f"--max-moves must be >= 0, got {args.max_moves}")
    if args.time_limit <= 0:
        raise ValueError(f"--time-limit must be > 0, got {args.time_limit}")
    if args.deterministic_time is not None and args.deterministic_time <= 0:
        raise ValueError(f"--deterministic-time must be > 0, got {args.deterministic_time}")
    current = None if args.current is None else read_placement(args.current, stats.num_experts,
                                                               args.num_gpus, args.num_nodes)
    options = SolverOptions(time_limit=args.time_limit, balance_tolerance=args.balance_tolerance,
                            current=current, max_moves=args.max_moves, seed=args.seed,
                            progress=not args.no_progress and sys.stderr.isatty(), objective=args.objective,
                            deterministic_time=args.deterministic_time)
    result = solve_placement(stats, args.num_gpus, args.num_redundant, args.num_nodes, args.num_groups, options)
    solution = evaluate(result.placement, stats, args.expert_bytes)
    baseline = evaluate(result.eplb, stats, args.expert_bytes)
    report = {
        "stats": stats.source, "num_layers": stats.num_layers, "num_experts": stats.num_experts,
        "num_gpus": args.num_gpus, "num_nodes": args.num_nodes, "num_redundant": args.num_redundant,
        "time_limit_s": args.time_limit, "deterministic_time": args.deterministic_time,
        "objective_kind": args.objective, "start": result.start, "solve_seconds": result.solve_seconds,
        "objective": result.objective, "bound": result.bound, "gap": result.gap,
        "solution": solution, "eplb": baseline,
    }
    if current is not None:
        report["current"] = evaluate(current, stats, args.expert_bytes)
        report["max_moves"] = args.max_moves
    write_placement(args.out, result.placement)
    if args.report:
        atomic_write_json(args.report, report)
    print(f"{'metric':<28}{'solution':>12}{'eplb':>12}")
    for key in ("balancedness_sglang", "balancedness_vllm", "colocation", "pair_colocation", "ll_cross_gpu_share",
                "ll_cross_node_share", "normal_cross_gpu_per_token", "normal_cross_node_per_token"):
        print(f"{key:<28}{_fmt(solution[key]):>12}{_fmt(baseline[key]):>12}")
    print(f"solved in {result.solve_seconds:.1f} s from the {result.start} start; objective "
          f"{result.objective:.4f}, bound {result.bound:.4f}, gap {result.gap:.3f}; wrote {args.out}")
    return 0
