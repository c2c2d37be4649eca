"""Tables, target checks, plots and files of a comparison.

Every comparison writes into its ``--out`` directory:

- ``runs.json``: run JSON (``experiments.metrics.runs``, schema ``moesched.runs/1``) with every
  request record (large; re-render it with ``python -m experiments.report``);
- ``summary.json``: the same runs without request records, plus the comparison's own facts
  (capacities, targets, placements) under ``"comparison"``;
- ``report.md`` and ``*.png``.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from moesched_base.atomic import atomic_write, atomic_write_json, atomic_write_text  # noqa: E402

from experiments.metrics.runs import SCHEMA, RunResult, dump_runs  # noqa: E402


def metric(run: RunResult, path: str) -> float | None:
    """A summary value by dotted path, e.g. ``"ttft_ms.mean"`` or ``"output_throughput"``."""
    value: Any = run.summary
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, (int, float)) else None


def ratio(run: RunResult, base: RunResult, path: str) -> float | None:
    a, b = metric(run, path), metric(base, path)
    return None if a is None or b is None or b == 0 else a / b


def cell(value: float | None, digits: int = 1) -> str:
    """A table cell: ``value`` with thousands separators and ``digits`` decimals, or ``n/a``."""
    return "n/a" if value is None else f"{value:,.{digits}f}"


#: (header, summary path, digits) of the comparison table's absolute columns
COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("TTFT mean ms", "ttft_ms.mean", 0), ("TTFT p99 ms", "ttft_ms.p99", 0),
    ("TPOT mean ms", "tpot_ms.mean", 1), ("TPOT p99 ms", "tpot_ms.p99", 1),
    ("out tok/s", "output_throughput", 0), ("SLO att.", "slo_attainment", 3),
)
#: (header, summary path) of the ratio columns (run / baseline)
RATIOS: tuple[tuple[str, str], ...] = (
    ("TTFT mean x", "ttft_ms.mean"), ("TTFT p99 x", "ttft_ms.p99"), ("TPOT mean x", "tpot_ms.mean"),
    ("tok/s x", "output_throughput"),
)


def comparison_table(runs: Sequence[RunResult], baseline: RunResult, display: Mapping[str, str] | None = None) -> str:
    """Markdown table: one row per run, absolute metrics and ratios to ``baseline``."""
    display = display or {}
    head = ["config"] + [h for h, _, _ in COLUMNS] + [h for h, _ in RATIOS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in runs:
        cells = [display.get(run.label, run.label)]
        cells += [cell(metric(run, path), digits) for _, path, digits in COLUMNS]
        cells += [cell(ratio(run, baseline, path), 2) for _, path in RATIOS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    """One must-show check: ``value <= bound`` (or ``>=`` when ``at_least``)."""

    scope: str
    name: str
    value: float | None
    bound: float
    at_least: bool = False

    @property
    def met(self) -> bool:
        if self.value is None:
            return False
        return self.value >= self.bound if self.at_least else self.value <= self.bound

    def to_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "name": self.name, "value": self.value, "bound": self.bound,
                "at_least": self.at_least, "met": self.met}


def ratio_target(scope: str, run: RunResult, base: RunResult, path: str, bound: float,
                 at_least: bool = False) -> Target:
    """Target on ``run / base`` of summary ``path``."""
    sign = ">=" if at_least else "<="
    return Target(scope, f"{path} {run.label} / {base.label} {sign} {bound:g}", ratio(run, base, path), bound, at_least)


def targets_table(targets: Sequence[Target]) -> str:
    lines = ["| scope | target | measured | met |", "|---|---|---|---|"]
    for t in targets:
        lines.append(f"| {t.scope} | {t.name} | {cell(t.value, 3)} | {'yes' if t.met else '**no**'} |")
    return "\n".join(lines)


def save_png(fig: plt.Figure, path: Path) -> Path:
    """Render ``fig`` to PNG bytes and write them atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return atomic_write(path, lambda fh: fh.write(buffer.getvalue()))


def ratio_bars(per_trace: Mapping[str, Sequence[RunResult]], baseline: str, path: Path,
               paths: Sequence[tuple[str, str]] = (("mean TTFT", "ttft_ms.mean"), ("mean TPOT", "tpot_ms.mean"),
                                                   ("throughput", "output_throughput"))) -> Path:
    """Grouped bars, one panel per metric: every run's value / the baseline's, per trace."""
    fig, axes = plt.subplots(1, len(paths), figsize=(4.6 * len(paths), 3.6), squeeze=False)
    for ax, (title, mpath) in zip(axes[0], paths):
        traces = list(per_trace)
        labels = [r.label for r in next(iter(per_trace.values()))]
        width = 0.8 / max(1, len(labels))
        for i, label in enumerate(labels):
            values = []
            for trace in traces:
                runs = {r.label: r for r in per_trace[trace]}
                values.append(ratio(runs[label], runs[baseline], mpath) or 0.0)
            ax.bar([t + i * width for t in range(len(traces))], values, width, label=label)
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xticks([t + 0.4 - width / 2 for t in range(len(traces))], traces)
        ax.set_title(f"{title} / {baseline}")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return save_png(fig, path)


def sweep_plot(points: Sequence[Mapping[str, float]], x_key: str, series: Sequence[tuple[str, str]],
               title: str, path: Path) -> Path:
    """Lines of ``points[*][y_key]`` against ``points[*][x_key]`` (log x when all x > 0)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    xs = [p[x_key] for p in points]
    for name, key in series:
        ax.plot(xs, [p[key] for p in points], marker="o", label=name)
    if all(x > 0 for x in xs):
        ax.set_xscale("log")
    ax.set_xlabel(x_key)
    ax.set_ylabel("ms")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_png(fig, path)


def write_outputs(out: Path, runs: Sequence[RunResult], comparison: Mapping[str, Any], markdown: str) -> None:
    """``runs.json`` (with records), ``summary.json`` (without, plus ``comparison``), ``report.md``."""
    out.mkdir(parents=True, exist_ok=True)
    dump_runs(out / "runs.json", list(runs))
    light = [replace(r, requests=[]).to_dict() for r in runs]
    atomic_write_json(out / "summary.json", {"schema": SCHEMA, "runs": light, "comparison": comparison}, indent=1)
    atomic_write_text(out / "report.md", markdown)


def trace_runs(trace: str, runs: Iterable[RunResult]) -> list[RunResult]:
    """``runs`` labelled ``<trace>/<label>`` for a file holding every trace's runs."""
    return [replace(r, label=f"{trace}/{r.label}") for r in runs]


def publish(out: Path, runs: Sequence[RunResult], comparison: Mapping[str, Any], markdown: str) -> None:
    """:func:`write_outputs`, then the report on stdout and the files written on stderr."""
    write_outputs(out, runs, comparison, markdown)
    print(markdown)
    written = ["runs.json", "summary.json", "report.md", *sorted(p.name for p in out.glob("*.png"))]
    print(f"wrote {', '.join(written)} under {out}", file=sys.stderr)
