"""The workload options shared by ``moesched bench`` and ``moesched simulate``.

``--trace --format --rate --max-requests --start-s --duration-s --max-total-tokens
--workload-class --seed`` map one-to-one onto :class:`~experiments.workloads.load.WorkloadSpec`.
"""

from __future__ import annotations

import argparse
from typing import Any

from experiments.workloads.load import LOADERS, WorkloadSpec


def add_workload_arguments(parser: argparse.ArgumentParser, seed_also: str) -> None:
    """Register the workload options in a ``workload`` group of ``parser``; ``seed_also`` says
    what else the command seeds with ``--seed`` (e.g. ``"prompt content"``)."""
    w = parser.add_argument_group("workload")
    w.add_argument("--trace", required=True, help="trace file (Azure CSV, Mooncake JSONL) or synthetic spec (JSON)")
    w.add_argument("--format", required=True, choices=sorted(LOADERS), help="format of --trace")
    w.add_argument("--rate", type=float, help="rescale arrivals to this mean rate in requests/s")
    w.add_argument("--max-requests", type=int, help="replay only the first N requests (after --start-s)")
    w.add_argument("--start-s", type=float, default=0.0, help="skip the trace's first S seconds")
    w.add_argument("--duration-s", type=float, help="keep only D seconds of the trace after --start-s")
    w.add_argument("--max-total-tokens", type=int,
                   help="clip prompt + output to this many tokens (a server's max model length, e.g. 2048)")
    w.add_argument("--workload-class", help="tag stored on every request (e.g. conv)")
    w.add_argument("--seed", type=int, default=0, help=f"seed of synthetic workloads and {seed_also}")


def workload_spec_from_args(args: argparse.Namespace) -> WorkloadSpec:
    """The :class:`WorkloadSpec` the workload options describe."""
    return WorkloadSpec(path=args.trace, format=args.format, workload_class=args.workload_class, seed=args.seed,
                        start_s=args.start_s, duration_s=args.duration_s, max_requests=args.max_requests,
                        rate_rps=args.rate, max_total_tokens=args.max_total_tokens)


def workload_record(args: argparse.Namespace, requests: int) -> dict[str, Any]:
    """The ``workload`` entry of a run's config: the options as given and the ``requests`` loaded."""
    return {"trace": args.trace, "format": args.format, "requests": requests, "rate_rps": args.rate,
            "max_requests": args.max_requests, "start_s": args.start_s, "duration_s": args.duration_s,
            "max_total_tokens": args.max_total_tokens, "seed": args.seed}
