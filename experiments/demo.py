"""The project's main job on bundled data, in a few minutes on 2 cores (``make demo``).

    python -m experiments.demo --out results/demo

1. ``moesched place``: solve an expert placement for OLMoE (bundled routing counts, arxiv domain)
   on the expert-parallel GPUs of a simulated engine (8: the full-stack comparison's default
   cluster); writes ``placement.json`` (SGLang's ``--init-expert-location`` format) and
   ``placement_report.json``, prints solver vs EPLB metrics.
2. The full-stack comparison in quick mode (``experiments.comparisons.full_stack --quick``) on
   Azure conv and Mooncake with that placement: vanilla vLLM, stock SGLang, each moesched layer
   alone and all three; prints the tables and writes run JSON, Markdown and plots under
   ``<out>/full_stack``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from expert_sched import cli as place_cli
from experiments.comparisons import full_stack

ROUTING_STATS = "data/routing/olmoe_routing_counts.npz"
ROUTING_DOMAIN = "arxiv"


def _run_module(module, argv: list[str]) -> int:
    """Parse ``argv`` with ``module.add_arguments`` and call ``module.run``."""
    parser = argparse.ArgumentParser(prog=module.__name__)
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv))


def run(out: Path, solve_time_s: float, no_progress: bool) -> int:
    started = time.monotonic()
    placement = out / "placement.json"
    gpus = full_stack.CLUSTERS[full_stack.DEFAULT_CLUSTER].ep_gpus
    print(f"== 1/2 moesched place: OLMoE arxiv routing, {gpus} GPUs, {solve_time_s:g} s ==", flush=True)
    _run_module(place_cli, ["--stats", ROUTING_STATS, "--domain", ROUTING_DOMAIN, "--num-gpus",
                            str(gpus), "--num-redundant", "0", "--time-limit", str(solve_time_s),
                            "--out", str(placement), "--report", str(out / "placement_report.json"),
                            "--no-progress"])
    print("\n== 2/2 full-stack comparison (quick): Azure conv, Mooncake ==", flush=True)
    argv = ["--quick", "--traces", "azure-conv,mooncake", "--placement", str(placement),
            "--routing-stats", ROUTING_STATS, "--routing-domain", ROUTING_DOMAIN,
            "--out", str(out / "full_stack")]
    code = _run_module(full_stack, argv + (["--no-progress"] if no_progress else []))
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s; outputs under {out}/", flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/demo", help="output directory (default results/demo)")
    parser.add_argument("--solve-time-s", type=float, default=10.0, help="placement solver time limit (s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        if args.solve_time_s <= 0:
            raise ValueError(f"--solve-time-s: expected > 0, got {args.solve_time_s}")
        return run(Path(args.out), args.solve_time_s, args.no_progress)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
