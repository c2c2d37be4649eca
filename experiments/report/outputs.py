"""The output options shared by ``moesched bench`` and ``moesched simulate``, and writing them.

``--slo-ttft-ms --slo-tpot-ms --out --markdown --plots --baseline``: the run JSON
(:func:`experiments.metrics.runs.dump_runs`), then optionally the Markdown report
(:mod:`.markdown`) and PNG plots (:mod:`.plots`, imports matplotlib).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from moesched_base.atomic import atomic_write_text

from experiments.metrics.runs import RunResult, dump_runs
from experiments.metrics.summary import Slo


def add_output_arguments(parser: argparse.ArgumentParser, runs: str) -> argparse._ArgumentGroup:
    """Register the output options in an ``output`` group of ``parser`` and return the group (for
    a command's own output options); ``runs`` names what the runs are, e.g. ``"endpoint"``."""
    o = parser.add_argument_group("output")
    o.add_argument("--slo-ttft-ms", type=float, help="TTFT objective for goodput and SLO attainment")
    o.add_argument("--slo-tpot-ms", type=float, help="TPOT objective for goodput and SLO attainment")
    o.add_argument("--out", required=True, help="run JSON to write")
    o.add_argument("--markdown", help="Markdown report to write")
    o.add_argument("--plots", metavar="DIR", help="directory for PNG plots")
    o.add_argument("--baseline", help=f"label the Markdown ratios are taken against (default: the first {runs})")
    return o


def slo_from_args(args: argparse.Namespace) -> Slo:
    """The SLO of ``--slo-ttft-ms`` / ``--slo-tpot-ms`` (None: no objective)."""
    return Slo(ttft_ms=args.slo_ttft_ms, tpot_ms=args.slo_tpot_ms)


def write_run_outputs(args: argparse.Namespace, runs: Sequence[RunResult], title: str) -> str:
    """Write the run JSON, then the optional Markdown report (headed ``title``) and plots; return
    a ``wrote ...`` line naming them."""
    dump_runs(args.out, list(runs))
    written = [args.out]
    if args.markdown:
        from experiments.report.markdown import render_markdown
        atomic_write_text(args.markdown, render_markdown(list(runs), args.baseline, title))
        written.append(args.markdown)
    if args.plots:
        from experiments.report.plots import write_plots
        write_plots(list(runs), args.plots)
        written.append(f"{args.plots}/")
    return "wrote " + ", ".join(written)
