"""``python -m experiments.report RUN.json [...] --markdown OUT.md --plots DIR [--baseline LABEL]``.

Renders the Markdown table and plots of one or more run JSON files (from ``moesched bench`` or the
simulator); runs from several files are concatenated in order. Bad input: one line, exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from moesched_base.atomic import atomic_write_text

from experiments.metrics.runs import load_runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.report", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run JSON files")
    parser.add_argument("--markdown", help="Markdown report to write (default: print it)")
    parser.add_argument("--plots", metavar="DIR", help="directory for PNG plots")
    parser.add_argument("--baseline", help="label the ratios are taken against (default: the first run)")
    parser.add_argument("--title", default="Benchmark results")
    args = parser.parse_args(argv)
    try:
        runs = [run for path in args.runs for run in load_runs(path)]
        from experiments.report.markdown import render_markdown
        text = render_markdown(runs, args.baseline, args.title)
        if args.markdown:
            atomic_write_text(args.markdown, text)
        else:
            print(text, end="")
        if args.plots:
            from experiments.report.plots import write_plots
            write_plots(runs, args.plots)
    except (ValueError, OSError) as exc:
        print(f"python -m experiments.report: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
