"""PNG plots of run results: TTFT and TPOT CDFs, and latency over the replay's time axis."""

from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from moesched_base.atomic import atomic_write  # noqa: E402

from experiments.metrics.runs import RunResult  # noqa: E402

#: CDFs whose values span more than this factor get a logarithmic x axis
LOG_SCALE_SPAN = 50.0


def _save(fig: plt.Figure, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write(path, lambda fh: fh.write(buf.getvalue()))


def _cdf(runs: list[RunResult], field: str, title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for run in runs:
        values = np.sort([getattr(r, field) for r in run.requests if r.ok and getattr(r, field) is not None])
        if values.size:
            ax.step(values, np.arange(1, values.size + 1) / values.size, where="post", label=run.label)
    lows = [line.get_xdata().min() for line in ax.get_lines()]
    highs = [line.get_xdata().max() for line in ax.get_lines()]
    if lows and min(lows) > 0 and max(highs) / min(lows) > LOG_SCALE_SPAN:
        ax.set_xscale("log")
    ax.set_xlabel(f"{title} (ms)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(f"{title} CDF")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def _over_time(runs: list[RunResult], path: Path) -> Path:
    fig, axes = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for run in runs:
        ok = [r for r in run.requests if r.ok]
        t = [r.arrival_s for r in ok]
        axes[0].scatter(t, [r.ttft_ms for r in ok], s=6, alpha=0.6, label=run.label)
        axes[1].scatter(t, [r.e2e_ms for r in ok], s=6, alpha=0.6, label=run.label)
    axes[0].set_ylabel("TTFT (ms)")
    axes[1].set_ylabel("E2E latency (ms)")
    axes[1].set_xlabel("arrival time in the replay (s)")
    axes[0].set_title("Latency over time (all rounds)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend()
    return _save(fig, path)


def write_plots(runs: list[RunResult], directory: str | os.PathLike[str]) -> list[Path]:
    """Write ``ttft_cdf.png``, ``tpot_cdf.png`` and ``latency_over_time.png`` into ``directory``."""
    out = Path(directory)
    return [_cdf(runs, "ttft_ms", "TTFT", out / "ttft_cdf.png"),
            _cdf(runs, "tpot_ms", "TPOT", out / "tpot_cdf.png"),
            _over_time(runs, out / "latency_over_time.png")]
