"""Options and helpers shared by the comparison scripts."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from tqdm import tqdm

from experiments.comparisons.capacity import Replay, replay_at_load
from experiments.comparisons.stack import Cluster, Stack
from experiments.comparisons.traces import BundledTrace, bundled_trace
from experiments.metrics.summary import Slo
from experiments.workloads.types import TraceRequest


def add_common_arguments(parser: argparse.ArgumentParser, traces: str, requests: int, quick_requests: int,
                         out: str) -> None:
    """``--traces --requests --load --quick --slo-ttft-ms --slo-tpot-ms --out --no-progress``."""
    parser.add_argument("--traces", default=traces, help=f"comma-separated bundled traces (default {traces})")
    parser.add_argument("--requests", type=int, default=None,
                        help=f"requests replayed per trace (default {requests}; {quick_requests} with --quick)")
    parser.add_argument("--capacity-requests", type=int, default=None,
                        help="requests of the saturating capacity run: the replayed ones, repeated (default: 3 x --requests)")
    parser.add_argument("--load", type=float, default=0.9, help="offered load as a fraction of capacity")
    parser.add_argument("--quick", action="store_true", help="small version: fewer requests and configurations")
    parser.add_argument("--slo-ttft-ms", type=float, default=1000.0, help="TTFT objective of SLO attainment")
    parser.add_argument("--slo-tpot-ms", type=float, default=100.0, help="TPOT objective of SLO attainment")
    parser.add_argument("--out", default=out, help=f"output directory (default {out})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(default_requests=requests, quick_requests=quick_requests)


def parse_common(args: argparse.Namespace) -> tuple[list[BundledTrace], int, int, Slo]:
    """Validated traces, request count, capacity-run request count and SLO of the common options
    (ValueError naming the flag)."""
    traces = [bundled_trace(name.strip()) for name in args.traces.split(",") if name.strip()]
    if not traces:
        raise ValueError("--traces: expected at least one trace name")
    requests = args.requests or (args.quick_requests if args.quick else args.default_requests)
    if requests < 50:
        raise ValueError(f"--requests: expected >= 50, got {requests}")
    capacity_requests = args.capacity_requests or 3 * requests
    if capacity_requests < 50:
        raise ValueError(f"--capacity-requests: expected >= 50, got {capacity_requests}")
    if not 0 < args.load <= 2:
        raise ValueError(f"--load: expected a fraction in (0, 2], got {args.load}")
    for name in ("slo_ttft_ms", "slo_tpot_ms"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')}: expected > 0, got {getattr(args, name)}")
    return traces, requests, capacity_requests, Slo(ttft_ms=args.slo_ttft_ms, tpot_ms=args.slo_tpot_ms)


@contextmanager
def progress(total: int, disabled: bool, desc: str) -> Iterator[tqdm]:
    """A tqdm bar over simulation runs (on stderr)."""
    bar = tqdm(total=total, disable=disabled, desc=desc, unit="run", leave=False)
    try:
        yield bar
    finally:
        bar.close()


def replays(recorded: Iterable[tuple[str, list[TraceRequest]]], baseline: Stack, cluster: Cluster,
            min_requests: int, load: float, bar: tqdm) -> Iterator[Replay]:
    """Per ``(trace name, recorded requests)``: measure ``baseline``'s capacity (one ``bar`` step),
    log it on stderr and yield the requests replayed at ``load`` x capacity
    (:func:`~experiments.comparisons.capacity.replay_at_load`)."""
    for name, requests in recorded:
        replay = replay_at_load(name, requests, baseline, cluster, min_requests, load)
        bar.update()
        print(replay.offered.describe(name), file=sys.stderr)
        yield replay


def script_main(prog: str, doc: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                run: Callable[[argparse.Namespace], int], argv: list[str] | None) -> int:
    """``python -m <prog>``: parse ``argv`` with ``add_arguments``, call ``run``; a ValueError or
    OSError becomes ``error: ...`` on stderr and exit code 2 (as ``moesched`` does)."""
    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=doc.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
