"""Issue 5's simulator must-show: engine dispatchers on 8 engines at ~0.85 of capacity.

    python -m experiments.comparisons.dispatch_layer [--quick] [--out results/comparisons/dispatch]

Cluster: 8 simulated engines (``qwen3-30b-a3b-h100`` step model, 256 running, 8,192 tokens per step,
160,000 KV tokens, prefix caching, FCFS per engine), load reports refreshed every 0.5 s (a router
polling its engines). Traces:

- ``mooncake``: the bundled Mooncake trace (real prefix sharing through ``hash_ids``), prompt +
  output clipped to 131,072 tokens (Qwen3-30B-A3B's extended context; the KV pool holds 160,000);
- ``azure-conv-sessions``: Azure 2023 conv grouped into multi-turn sessions by
  :mod:`experiments.workloads.sessions` (an assumed conversation model: the trace has no sessions).

Per trace: the first ``--requests`` requests; capacity = round robin's saturating run
(:mod:`.capacity`); the same requests replayed at ``--load`` x capacity under round robin,
least-requests, power-of-two, sglang-router's cache_aware, moesched's scored dispatcher
(``configs/dispatch.toml``) and the GAPS hybrid (``configs/dispatch_gaps.toml``). Targets (issue 5):
scored P99 TTFT <= 0.75x cache_aware and mean TTFT <= 0.5x round robin, in the same run.
Also reported: prefix hit rate and load balance (max/mean queued work, :mod:`.dispatch_metrics`).
Prints the tables, writes ``runs.json``, ``summary.json``, ``report.md`` and plots under ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from engine_dispatch.config import load_config  # noqa: E402
from experiments.comparisons.cli_common import progress, replays, script_main  # noqa: E402
from experiments.comparisons.report import (  # noqa: E402
    cell, comparison_table, publish, ratio_bars, ratio_target, save_png, targets_table, trace_runs,
)
from experiments.comparisons.stack import Cluster, Stack, build_dispatcher, run_stack  # noqa: E402
from experiments.comparisons.traces import REPO_ROOT, bundled_trace  # noqa: E402
from experiments.metrics.runs import RunResult  # noqa: E402
from experiments.metrics.summary import Slo  # noqa: E402
from experiments.sim.config import EngineConfig  # noqa: E402
from experiments.workloads.sessions import SessionSpec, add_sessions  # noqa: E402
from experiments.workloads.transform import clip_context  # noqa: E402
from experiments.workloads.types import TraceRequest  # noqa: E402
from perf_model.model_file import resolve_model  # noqa: E402

GPU_MODEL = "qwen3-30b-a3b-h100"
ENGINES = 8
MAX_CONTEXT_TOKENS = 131_072
TRACES = ("mooncake", "azure-conv-sessions")
BASELINE = "round-robin"
CACHE_AWARE = "cache-aware"
OURS = "scored"


@dataclass(frozen=True)
class Policy:
    """A compared dispatcher: table label, factory name and (scored only) its TOML config, whose
    top-level tables ``overrides`` replaces (a weight-sweep variant)."""

    label: str
    dispatch: str
    config_path: str | None = None
    overrides: Mapping[str, Any] | None = None

    def stack(self) -> Stack:
        """The simulated stack: FCFS engines behind this dispatcher, its config read and validated
        (ValueError naming the variant, file and key)."""
        if self.config_path is None:
            return Stack(self.label, dispatch=self.dispatch)
        try:
            config = load_config(self.config_path, self.overrides)
        except ValueError as exc:
            raise ValueError(f"{self.label}: {exc}") from exc
        return Stack(self.label, dispatch=self.dispatch, dispatch_options={"config": config})


#: scored-dispatcher variants of ``--weight-sweep`` (tables replacing the config file's): how the
#: default weights were chosen, on both traces at once
WEIGHT_SWEEP: tuple[tuple[str, dict[str, Any]], ...] = (
    ("no cache_affinity (built-in)", {"weights": {"prefix_load": 1.0, "least_load": 0.3, "kv_use": 0.1,
                                                  "stickiness": 0.3}}),
    ("prefix_load only", {"weights": {"prefix_load": 1.0}}),
    ("prefix_load + least_load 0.3", {"weights": {"prefix_load": 1.0, "least_load": 0.3}}),
    ("no stickiness", {"weights": {"prefix_load": 1.0, "least_load": 0.3, "kv_use": 0.1}}),
    ("stickiness 1.0", {"weights": {"prefix_load": 1.0, "least_load": 0.3, "kv_use": 0.1, "stickiness": 1.0}}),
    ("least_load 1.0", {"weights": {"prefix_load": 1.0, "least_load": 1.0, "kv_use": 0.1, "stickiness": 0.3}}),
    ("least_load 0.1", {"weights": {"prefix_load": 1.0, "least_load": 0.1, "kv_use": 0.1, "stickiness": 0.3}}),
    ("kv_use 0.5", {"weights": {"prefix_load": 1.0, "least_load": 0.3, "kv_use": 0.5, "stickiness": 0.3}}),
    ("+ predicted_load 0.5", {"weights": {"prefix_load": 1.0, "least_load": 0.3, "kv_use": 0.1, "stickiness": 0.3,
                                          "predicted_load": 0.5}}),
    ("prefix_load scale 2048", {"prefix_load": {"scale_tokens": 2048.0}}),
    ("prefix_load scale 128", {"prefix_load": {"scale_tokens": 128.0}}),
    ("KV-saturation filter on", {"dispatch": {"filter_kv_saturated": True}}),
)


def policies(scored_config: str, gaps_config: str) -> list[Policy]:
    return [Policy(BASELINE, "round-robin"), Policy("least-requests", "least-requests"),
            Policy("power-of-two", "power-of-two"), Policy(CACHE_AWARE, "cache-aware"),
            Policy(OURS, "scored", scored_config), Policy("gaps-hybrid", "scored", gaps_config)]


def trace_requests(name: str, count: int, sessions: SessionSpec) -> list[TraceRequest]:
    """The first ``count`` requests of trace ``name`` (``TRACES``) at their recorded arrival times."""
    if name == "mooncake":
        return clip_context(bundled_trace("mooncake").load(count), MAX_CONTEXT_TOKENS)
    if name == "azure-conv-sessions":
        return add_sessions(bundled_trace("azure-conv").load(count), sessions)
    raise ValueError(f"--traces: unknown trace {name!r}; expected some of {', '.join(TRACES)}")


def run_policy(policy: Policy, stack: Stack, cluster: Cluster, requests: list[TraceRequest], slo: Slo,
               workload: dict[str, Any], seed: int = 0) -> RunResult:
    """Simulate ``stack`` (``policy.stack()``) with dispatch metrics; the run config records the
    policy's config file and overrides."""
    run = run_stack(stack, cluster, requests, slo, workload, seed, dispatch_metrics=True)
    run.config |= {"dispatch_config": policy.config_path, "dispatch_overrides": dict(policy.overrides or {})}
    return run


def dispatch_table(runs: dict[str, RunResult]) -> str:
    """Markdown: latency ratios to round robin / cache_aware, hit rate and balance per policy."""
    head = ["dispatch", "TTFT mean ms", "TTFT p99 ms", "TPOT mean ms", "mean TTFT / RR", "p99 TTFT / CA",
            "prefix hit rate", "queued prefill tokens/engine", "queued prefill max/mean", "outstanding max/mean",
            "preemptions"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rr, ca = runs[BASELINE].summary, runs[CACHE_AWARE].summary
    for label, run in runs.items():
        s, d = run.summary, run.summary["dispatch"]
        lines.append("| " + " | ".join([
            label, cell(s["ttft_ms"]["mean"], 0), cell(s["ttft_ms"]["p99"], 0), cell(s["tpot_ms"]["mean"], 1),
            cell(s["ttft_ms"]["mean"] / rr["ttft_ms"]["mean"], 2), cell(s["ttft_ms"]["p99"] / ca["ttft_ms"]["p99"], 2),
            cell(d["prefix_hit_rate"], 3), cell(d["queued_prefill_per_engine_time_mean"], 0),
            cell(d["queued_prefill_max_over_mean"], 2),
            cell(d["outstanding_max_over_mean"], 2), str(s["preemptions"])]) + " |")
    return "\n".join(lines)


def sweep_table(sweep: Mapping[str, Mapping[str, RunResult]], runs: Mapping[str, Mapping[str, RunResult]]) -> str:
    """Markdown: per variant and trace, mean TTFT / round robin and P99 TTFT / cache_aware, and the
    geometric mean of those ratios over every trace (the number the default was chosen by)."""
    traces = list(runs)
    head = ["scored variant"] + [f"{t}: {h}" for t in traces for h in ("mean/RR", "p99/CA", "hit rate")] + ["geo. mean"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, per_trace in sweep.items():
        cells, ratios = [variant], []
        for t in traces:
            s = per_trace[t].summary
            mean = s["ttft_ms"]["mean"] / runs[t][BASELINE].summary["ttft_ms"]["mean"]
            p99 = s["ttft_ms"]["p99"] / runs[t][CACHE_AWARE].summary["ttft_ms"]["p99"]
            ratios += [mean, p99]
            cells += [cell(mean, 3), cell(p99, 3), cell(s["dispatch"]["prefix_hit_rate"], 3)]
        cells.append(cell(float(np.exp(np.mean(np.log(ratios)))), 3))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ttft_cdf_plot(runs: dict[str, RunResult], title: str, path: Path) -> Path:
    """Empirical CDF of TTFT (log x) per policy."""
    fig, ax = plt.subplots(figsize=(5.8, 3.8))
    for label, run in runs.items():
        ttft = np.sort([r.ttft_ms for r in run.requests if r.ttft_ms is not None])
        ax.plot(ttft, np.arange(1, len(ttft) + 1) / max(1, len(ttft)), label=label)
    ax.set_xscale("log")
    ax.set_xlabel("TTFT ms")
    ax.set_ylabel("fraction of requests")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return save_png(fig, path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--traces", default=",".join(TRACES), help=f"comma-separated, some of {', '.join(TRACES)}")
    parser.add_argument("--requests", type=int, default=None, help="requests replayed per trace (default 3000; 500 with --quick)")
    parser.add_argument("--capacity-requests", type=int, default=None,
                        help="requests of the saturating capacity run: the replayed ones, repeated (default 2 x --requests)")
    parser.add_argument("--load", type=float, default=0.85, help="offered load as a fraction of capacity")
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument("--scored-config", default="configs/dispatch.toml", help="TOML of the scored dispatcher")
    parser.add_argument("--gaps-config", default="configs/dispatch_gaps.toml", help="TOML of the GAPS hybrid")
    parser.add_argument("--session-turns", type=float, default=SessionSpec.mean_turns,
                        help="azure-conv-sessions: mean turns per session")
    parser.add_argument("--session-think-s", type=float, default=SessionSpec.think_time_s,
                        help="azure-conv-sessions: mean think time between turns (s, trace time)")
    parser.add_argument("--weight-sweep", action="store_true",
                        help="also run the scored dispatcher's weight variants (WEIGHT_SWEEP) and tabulate them")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sessions and of power-of-two")
    parser.add_argument("--slo-ttft-ms", type=float, default=2000.0, help="TTFT objective of SLO attainment")
    parser.add_argument("--slo-tpot-ms", type=float, default=100.0, help="TPOT objective of SLO attainment")
    parser.add_argument("--out", default="results/comparisons/dispatch", help="output directory")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _resolve(path: str) -> str:
    """A config path as given, or relative to the repository root when it does not exist as given."""
    if Path(path).exists() or Path(path).is_absolute():
        return path
    return str(REPO_ROOT / path)


def run(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.traces.split(",") if n.strip()]
    if not names or any(n not in TRACES for n in names):
        raise ValueError(f"--traces: expected some of {', '.join(TRACES)}, got {args.traces!r}")
    n_requests = args.requests or (500 if args.quick else 3000)
    n_capacity = args.capacity_requests or 2 * n_requests
    if n_requests < 50 or n_capacity < 50:
        raise ValueError(f"--requests, --capacity-requests: expected >= 50, got {n_requests}, {n_capacity}")
    if not 0 < args.load <= 2:
        raise ValueError(f"--load: expected a fraction in (0, 2], got {args.load}")
    sessions = SessionSpec(mean_turns=args.session_turns, think_time_s=args.session_think_s, seed=args.seed)
    slo = Slo(ttft_ms=args.slo_ttft_ms, tpot_ms=args.slo_tpot_ms)
    scored_config = _resolve(args.scored_config)
    todo = policies(scored_config, _resolve(args.gaps_config))
    cluster = Cluster(engines=ENGINES, engine=EngineConfig(), model=resolve_model(GPU_MODEL), model_name=GPU_MODEL,
                      load_refresh_s=0.5)
    variants = [Policy(label, "scored", scored_config, overrides)
                for label, overrides in (WEIGHT_SWEEP if args.weight_sweep else ())]
    stacks = {policy.label: policy.stack() for policy in todo + variants}  # refuse a bad config
    for stack in stacks.values():  # before any simulation
        build_dispatcher(stack, cluster, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    all_runs: list[RunResult] = []
    per_trace: dict[str, list[RunResult]] = {}
    capacities, targets, sections, balance = {}, [], [], {}
    main_runs: dict[str, dict[str, RunResult]] = {}
    sweep: dict[str, dict[str, RunResult]] = {f"{OURS} (config file)": {}}
    with progress(len(names) * (len(todo) + len(variants) + 1), args.no_progress, "dispatch layer") as bar:
        recorded = ((name, trace_requests(name, n_requests, sessions)) for name in names)
        for replay in replays(recorded, Stack(BASELINE), cluster, n_capacity, args.load, bar):
            name, offered, requests = replay.trace, replay.offered, replay.requests
            workload = replay.workload() | {"sessions": sessions.__dict__ if name == "azure-conv-sessions" else None}
            capacities[name] = offered.to_dict()
            runs: dict[str, RunResult] = {}
            for policy in todo:
                runs[policy.label] = run_policy(policy, stacks[policy.label], cluster, requests, slo, workload,
                                                args.seed)
                bar.update()
            main_runs[name] = runs
            sweep[f"{OURS} (config file)"][name] = runs[OURS]
            for variant in variants:
                sweep.setdefault(variant.label, {})[name] = run_policy(variant, stacks[variant.label], cluster,
                                                                      requests, slo, workload, args.seed)
                bar.update()
            targets += [ratio_target(name, runs[OURS], runs[CACHE_AWARE], "ttft_ms.p99", 0.75),
                        ratio_target(name, runs[OURS], runs[BASELINE], "ttft_ms.mean", 0.5)]
            balance[name] = {label: r.summary["dispatch"] for label, r in runs.items()}
            per_trace[name] = list(runs.values())
            sections.append(offered.heading(name, len(requests)) + "\n\n"
                            + dispatch_table(runs) + "\n\n" + comparison_table(list(runs.values()), runs[BASELINE])
                            + f"\n\n![TTFT CDF {name}](ttft_cdf_{name}.png)")
            ttft_cdf_plot(runs, f"TTFT, {name}, {ENGINES} engines, load {args.load:g}", out / f"ttft_cdf_{name}.png")
            all_runs += trace_runs(name, runs.values())
            all_runs += trace_runs(name, (replace(r[name], label=f"sweep: {label}") for label, r in sweep.items()
                                          if label != f"{OURS} (config file)"))
    ratio_bars(per_trace, BASELINE, out / "ratios.png",
               (("mean TTFT", "ttft_ms.mean"), ("P99 TTFT", "ttft_ms.p99"), ("mean TPOT", "tpot_ms.mean")))
    markdown = "\n\n".join([
        f"# Dispatch layer, simulated ({ENGINES} engines x {GPU_MODEL}, FCFS per engine, load {args.load:g})",
        f"Scored config: `{args.scored_config}`; GAPS hybrid: `{args.gaps_config}`. Load reports refreshed every "
        f"{cluster.load_refresh_s:g} s. Balance columns (0.25 s samples): sum over samples of the busiest engine's "
        f"queued prefill tokens (outstanding requests) / sum over samples of the engines' mean; 1 = even, "
        f"{ENGINES} = all on one engine; tokens/engine: time mean of the engines' mean queued prefill tokens. SLO: TTFT <= {slo.ttft_ms:g} ms, TPOT <= {slo.tpot_ms:g} ms.",
        "## Targets (issue 5)", targets_table(targets), *sections, "![ratios](ratios.png)",
        *(["## Scored weight sweep (same variants on every trace)", sweep_table(sweep, main_runs)] if variants else [])
    ]) + "\n"
    comparison = {"capacities": capacities, "targets": [t.to_dict() for t in targets], "gpu_model": GPU_MODEL,
                  "engines": ENGINES, "quick": args.quick, "dispatch": balance,
                  "configs": {"scored": args.scored_config, "gaps": args.gaps_config},
                  "weight_sweep": {label: {t: r.summary["dispatch"] | {"ttft_ms": r.summary["ttft_ms"]}
                                           for t, r in per.items()} for label, per in sweep.items()} if variants else None}
    publish(out, all_runs, comparison, markdown)
    return 0


def main(argv: list[str] | None = None) -> int:
    return script_main("experiments.comparisons.dispatch_layer", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
