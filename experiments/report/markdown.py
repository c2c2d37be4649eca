"""Markdown tables of run results: one row per run, and ratios against a baseline run."""

from __future__ import annotations

from typing import Any

from experiments.metrics.runs import RunResult

#: (column header, summary path) of the main table
COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("TTFT mean", ("ttft_ms", "mean")), ("TTFT p50", ("ttft_ms", "p50")), ("TTFT p90", ("ttft_ms", "p90")),
    ("TTFT p99", ("ttft_ms", "p99")), ("TPOT mean", ("tpot_ms", "mean")), ("TPOT p50", ("tpot_ms", "p50")),
    ("TPOT p99", ("tpot_ms", "p99")), ("ITL mean", ("itl_ms", "mean")), ("ITL p99", ("itl_ms", "p99")),
    ("E2E mean", ("e2e_ms", "mean")), ("E2E p99", ("e2e_ms", "p99")),
)
#: (column header, summary path) of the ratio table; all are "lower is better" except throughput
RATIO_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("TTFT mean", ("ttft_ms", "mean")), ("TTFT p50", ("ttft_ms", "p50")), ("TTFT p99", ("ttft_ms", "p99")),
    ("TPOT mean", ("tpot_ms", "mean")), ("TPOT p99", ("tpot_ms", "p99")), ("E2E mean", ("e2e_ms", "mean")),
    ("output tok/s", ("output_throughput",)),
)


def _get(summary: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = summary
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def runs_table(runs: list[RunResult]) -> str:
    """One row per run: counts, latencies in ms, throughput, goodput and SLO attainment."""
    header = ["run", "ok", "failed", *[f"{name} (ms)" for name, _ in COLUMNS], "out tok/s", "goodput (req/s)",
              "SLO attained"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        s = run.summary
        att = s.get("slo_attainment")
        cells = [run.label, str(s["completed"]), str(s["failed"]), *[_fmt(_get(s, p)) for _, p in COLUMNS],
                 _fmt(s["output_throughput"]), _fmt(s.get("goodput"), 2), "n/a" if att is None else f"{att:.1%}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _round_ratio_range(run: RunResult, base: RunResult, path: tuple[str, ...]) -> str:
    ratios = [_ratio(_get(a, path), _get(b, path)) for a, b in zip(run.repeats, base.repeats)]
    ratios = [r for r in ratios if r is not None]
    return f"{min(ratios):.2f}-{max(ratios):.2f}" if len(ratios) > 1 else "n/a"


def ratio_table(runs: list[RunResult], baseline: str) -> str:
    """Each run's metrics divided by the baseline run's (< 1 is faster, except throughput).

    With repeated rounds, two more columns give the min-max over rounds of the per-round ratio of
    mean TTFT and mean TPOT (round i of the run against round i of the baseline).
    """
    by_label = {run.label: run for run in runs}
    if baseline not in by_label:
        raise ValueError(f"--baseline: expected one of the run labels {', '.join(by_label)}, got {baseline!r}")
    base = by_label[baseline]
    header = ["run", *[f"{name} / {baseline}" for name, _ in RATIO_COLUMNS], "TTFT mean ratio per round",
              "TPOT mean ratio per round"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        if run is base:
            continue
        cells = [run.label, *[_fmt(_ratio(_get(run.summary, p), _get(base.summary, p)), 2) for _, p in RATIO_COLUMNS],
                 _round_ratio_range(run, base, ("ttft_ms", "mean")), _round_ratio_range(run, base, ("tpot_ms", "mean"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(runs: list[RunResult], baseline: str | None = None, title: str = "Benchmark results") -> str:
    """A Markdown report: the runs table, then (with two or more runs) the ratios against ``baseline``
    (default: the first run). Latencies in ms; definitions as in ``vllm bench serve``."""
    if not runs:
        raise ValueError("report: expected at least one run")
    labels = [run.label for run in runs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"report: expected distinct run labels, got {', '.join(labels)}")
    parts = [f"# {title}", ""]
    slo = runs[0].summary.get("slo") or {}
    rounds = max(len(run.repeats) for run in runs) or 1
    parts.append(f"{len(runs[0].requests) // rounds} requests x {rounds} round(s) per run; SLOs: TTFT <= "
                 f"{_fmt(slo.get('ttft_ms'), 0)} ms, TPOT <= {_fmt(slo.get('tpot_ms'), 0)} ms.")
    parts += ["", runs_table(runs)]
    loads = [(run.label, run.config.get("host_load_avg_1m")) for run in runs if run.config.get("host_load_avg_1m")]
    if loads:
        parts += ["", "Host 1-minute load average at the start -> end of each round (2 cores here; above 2 the "
                      "machine was shared with other work):", ""]
        parts += [f"- {label}: " + ", ".join(f"{a:.1f} -> {b:.1f}" for a, b in rounds_) for label, rounds_ in loads]
    if len(runs) > 1:
        base = baseline or runs[0].label
        parts += ["", f"Ratios against `{base}` (< 1: lower latency than `{base}`):", "", ratio_table(runs, base)]
    errors = sorted({r.error for run in runs for r in run.requests if r.error})
    if errors:
        parts += ["", "Failed-request errors (distinct):", ""] + [f"- {e}" for e in errors[:10]]
    return "\n".join(parts) + "\n"
