"""Real CPU engines: SGLang with the moesched plugin vs stock SGLang and vs vanilla vLLM (issues 4, 7).

    .venv/bin/python -m experiments.comparisons.real_cpu [--rounds 3] [--opponents stock,vllm] \\
        [--requests 60] [--rate 3] [--max-wait-s 30] [--out results/real_cpu]

One pair of servers at a time (the machine has 2 cores): for each opponent, the patched SGLang and
the opponent are started, ``moesched bench`` replays the same overloaded short/long mix
(:mod:`experiments.comparisons.mixed_workload`) on both, interleaved and repeated (round r runs
the two in the order rotated by r), then both servers are stopped, whatever happened. Comparable
engine settings (stated in the report): the same model, at most ``--max-running`` running requests
in total (vLLM ``--max-num-seqs``; SGLang ``--max-running-requests`` per DP rank, times the DP
size), a prefill budget of ``--prefill-tokens`` tokens per step (vLLM ``--max-num-batched-tokens``;
SGLang ``--chunked-prefill-size`` and ``--max-prefill-tokens`` per rank) and prompt + output <=
2,048 tokens.

Fairness of the predictor: the bench sends ``max_tokens`` = the trace's output length with
``ignore_eos``; a predictor capped by ``max_tokens`` would know every output length. The plugin
runs with ``cap_by_max_tokens = false`` (its estimate is only what it learnt from finished
requests) unless ``--oracle-max-tokens`` is given; the report says which.

Writes into ``--out``: ``workload.csv`` (the replayed trace), ``moesched.toml`` (the plugin's
config), ``summary.json`` (settings, commands, per-round metrics, ratios, checks, targets),
``report.md``, ``plugin_log_<opponent>.txt`` (the plugin's lines of the patched server's log).
Full bench run JSON (every request record) and server logs stay in ``--log-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from moesched_base.atomic import atomic_write_json, atomic_write_text

from experiments.comparisons.mixed_workload import MixedWorkload, RequestClass
from experiments.comparisons.real_cpu_analysis import (plugin_log_lines, reordered_summary, request_table,
                                                       round_metrics, ttft_ratio, wait_bound_checks)
from experiments.comparisons.real_cpu_report import render_report
from experiments.engines.commands import DEFAULT_MODEL, REPO_ROOT, ServerConfig, build_command
from experiments.engines.ports import pick_free_port
from experiments.engines.server import EngineServer
from experiments.metrics.runs import load_runs
from sglang_patches.config import load_config

#: "plugin" = the patched server without the DP controller's late binding (with --late-binding)
OPPONENTS = ("stock", "vllm", "plugin")
PATCHED = "patched"
DISPATCH_CONFIG = REPO_ROOT / "configs" / "moesched-dp-dispatch.toml"
#: prices the late-binding rebalancer's drain times: SGLang's CPU step model calibrated here
#: (docs/request_sched.md, budget_real)
CPU_STEP_MODEL = REPO_ROOT / "results" / "budget_real" / "sglang_cpu_base.coef.json"
#: every request's prompt + output stays within this (vLLM --max-model-len, SGLang --context-length)
MAX_MODEL_LEN = 2048


@dataclass(frozen=True)
class EngineLimits:
    """Settings every server shares (totals over DP ranks)."""

    max_running: int
    prefill_tokens: int
    dp_size: int
    sglang_kv_tokens_per_rank: int
    moesched_dispatch: bool = True  # the patched server's DP dispatch is moesched's (else SGLang's round robin)
    moesched_preemption: bool = True  # the patched server preempts (--enable-priority-scheduling + plugin rule)
    snapshot_interval: int | None = None  # SGLang --load-snapshot-publish-interval (None: its 15 decode steps)


def _sglang_args(limits: EngineLimits) -> tuple[str, ...]:
    per_rank = limits.max_running // limits.dp_size
    return ("--dp-size", str(limits.dp_size), "--max-running-requests", str(per_rank),
            "--chunked-prefill-size", str(limits.prefill_tokens), "--max-prefill-tokens", str(limits.prefill_tokens),
            "--context-length", str(MAX_MODEL_LEN), "--sleep-on-idle") + (
        () if limits.snapshot_interval is None
        else ("--load-snapshot-publish-interval", str(limits.snapshot_interval)))


def _sglang_env(limits: EngineLimits) -> dict[str, str]:
    if limits.dp_size == 1:
        return {}
    return {"SGLANG_CPU_OMP_THREADS_BIND": "|".join(str(i % os.cpu_count()) for i in range(limits.dp_size))}


def server_config(label: str, limits: EngineLimits, moesched_config: Path) -> ServerConfig:
    """The server behind ``label`` (``patched``, ``plugin``, ``stock`` or ``vllm``) on a free port;
    ``plugin`` runs with :func:`plugin_config_path` ``(moesched_config)``."""
    port = pick_free_port()
    if label == "vllm":
        return ServerConfig("vllm", port, max_model_len=MAX_MODEL_LEN, extra_args=(
            "--max-num-seqs", str(limits.max_running), "--max-num-batched-tokens", str(limits.prefill_tokens)))
    args, env = _sglang_args(limits), _sglang_env(limits)
    if label == "stock":
        return ServerConfig("sglang", port, extra_args=args, extra_env=env,
                            sglang_max_total_tokens=limits.sglang_kv_tokens_per_rank)
    if label in (PATCHED, "plugin"):
        config_path = moesched_config if label == PATCHED else plugin_config_path(moesched_config)
        # what `moesched serve` sets: the switch and the config for every SGLang process, and the
        # load-balance method whose DP-controller method the plugin replaces (with --dp-size > 1)
        dispatch = ("--load-balance-method", "total_tokens") if limits.dp_size > 1 and limits.moesched_dispatch else ()
        # and, with [request.preemption] on, the flag under which SGLang consults its preemption path
        preemption = ("--enable-priority-scheduling",) if limits.moesched_preemption else ()
        return ServerConfig("sglang", port, extra_args=args + dispatch + preemption, sglang_plugins=True,
                            extra_env={**env, "MOESCHED_ENABLE": "1", "MOESCHED_CONFIG": str(config_path)},
                            sglang_max_total_tokens=limits.sglang_kv_tokens_per_rank)
    raise ValueError(f"server label: expected {PATCHED} or one of {', '.join(OPPONENTS)}, got {label!r}")


def plugin_config_path(moesched_config: Path) -> Path:
    """Where the ``plugin`` opponent's config (the patched one without late binding) is written."""
    return moesched_config.with_name("moesched_plugin.toml")


def moesched_toml(max_wait_s: float, aging_rate: float, cap_by_max_tokens: bool, dispatch: bool = True,
                  preemption_ratio: float | None = 2.0, dp_block_when_idle: bool = True,
                  late_binding: int | None = None, late_binding_moves: bool = True,
                  prefill_tokens: int = 2048) -> str:
    """The plugin's config for the comparison: sjf-aging with the given bound and aging rate (step
    model: the default H100 preset), preemption with ``preemption_ratio`` (None: off), scored DP
    dispatch unless ``dispatch`` is False, the DP controller's blocking wait unless
    ``dp_block_when_idle`` is False (then it spins as in stock SGLang); with ``late_binding`` = N
    the DP controller holds requests while a rank has N running + waiting (rebalancer priced by
    :data:`CPU_STEP_MODEL`, drain chunks of ``prefill_tokens``; no rebalancing rounds at all unless
    ``late_binding_moves``)."""
    late = "" if late_binding is None else (
        f"late_binding = true\n\n[dp_controller.hold]\nmax_in_flight = {late_binding}\n"
        f"step_model = \"{CPU_STEP_MODEL}\"\n\n[dp_controller.rebalance]\nchunk_tokens = {prefill_tokens}\n"
        + ("" if late_binding_moves else "enabled = false\n"))
    return (
        "# written by experiments/comparisons/real_cpu.py (plugin config of the patched SGLang)\n"
        "[request]\npolicy = \"sjf-aging\"\n\n[request.options]\n"
        f"max_wait_s = {max_wait_s!r}\n"
        f"aging_rate = {aging_rate!r}  # H100-preset job sizes; steps here are ~100x slower\n"
        f"cap_by_max_tokens = {'true' if cap_by_max_tokens else 'false'}  # max_tokens = true output length in this replay\n\n"
        + ("[request.preemption]\nenabled = false\n\n" if preemption_ratio is None else
           f"[request.preemption]\nenabled = true\nsize_ratio = {preemption_ratio!r}\nmax_per_request = 1\n"
           "overdue = true\n\n") +
        f"[dispatch]\nenabled = {'true' if dispatch else 'false'}\npolicy = \"scored\"\n\n[dispatch.options]\n"
        f"config_path = \"{DISPATCH_CONFIG}\"  # stale_after_s = 30: CPU loop iterations took up to seconds\n\n"
        f"[dp_controller]\nblock_when_idle = {'true' if dp_block_when_idle else 'false'}\n{late}\n"
        "[log]\nfirst_orderings = 10\nsummary_interval_s = 15.0\n"
    )


def bench_command(args: argparse.Namespace, trace: Path, urls: dict[str, str], out_json: Path,
                  process_groups: dict[str, int]) -> list[str]:
    """The ``moesched bench`` command of one pair (patched first; the bench rotates per round).
    Each server's process group is paused while the other one is replayed (``--pause-idle``): on
    this 2-core host an idle stock SGLang's DP controller spins a core, which would otherwise be
    taken from whichever server is being measured."""
    cmd = [sys.executable, "-m", "experiments.cli", "bench", "--trace", str(trace), "--format", "azure",
           "--tokenizer", str(DEFAULT_MODEL), "--max-total-tokens", str(MAX_MODEL_LEN),
           "--repeat", str(args.rounds), "--seed", str(args.seed), "--request-timeout", "3600",
           "--stall-timeout", "900", "--cooldown", str(args.cooldown), "--no-progress", "--out", str(out_json),
           "--markdown", str(out_json.with_suffix(".md")), "--baseline", PATCHED]
    for label, url in urls.items():
        cmd += ["--endpoint", f"{label}={url}"]
    for label, pgid in process_groups.items():
        cmd += ["--pause-idle", f"{label}={pgid}"]
    return cmd


def run_pair(args: argparse.Namespace, opponent: str, limits: EngineLimits, trace: Path,
             moesched_config: Path) -> dict[str, Any]:
    """Start the patched server and ``opponent``, replay, stop both; returns the pair's facts."""
    log_dir = Path(args.log_dir)
    servers: dict[str, EngineServer] = {}
    facts: dict[str, Any] = {"opponent": opponent, "servers": {}}
    try:
        for label in (PATCHED, opponent):
            config = server_config(label, limits, moesched_config)
            server = EngineServer(config, log_dir)
            servers[label] = server
            print(f"[real_cpu] starting {label} ({config.kind}) on port {config.port}", flush=True)
            server.start()
            argv, _ = build_command(config)
            facts["servers"][label] = {
                "kind": config.kind, "command": argv, "env": dict(config.extra_env),
                "ready_s": round(server.ready_seconds or 0.0, 1), "rss_gib": round(server.rss_bytes() / 2**30, 2),
                "log": str(server.log_path)}
        out_json = log_dir / f"bench-{opponent}.json"
        cmd = bench_command(args, trace, {label: s.base_url for label, s in servers.items()}, out_json,
                            {label: s.pid for label, s in servers.items()})
        facts["bench_command"] = cmd
        print(f"[real_cpu] {' '.join(cmd)}", flush=True)
        facts["bench_exit_code"] = subprocess.run(cmd, cwd=REPO_ROOT, check=False).returncode
        facts["bench_json"] = str(out_json)
    finally:
        for label, server in servers.items():
            print(f"[real_cpu] stopping {label}: {server.stop()}", flush=True)
    lines = plugin_log_lines(servers[PATCHED].log_path)
    atomic_write_text(Path(args.out) / f"plugin_log_{opponent}.txt", "\n".join(lines) + "\n")
    facts["plugin"] = {"log_lines": len(lines), **reordered_summary(lines)}
    return facts


def analyse_pair(facts: dict[str, Any], short_limit: int, max_wait_s: float, out: Path) -> dict[str, Any]:
    """Per-round metrics of both servers, ratios (opponent / patched) and the bound check; writes
    ``requests_<opponent>.csv`` (every request's lengths and latencies) into ``out``."""
    if not Path(facts["bench_json"]).exists():
        raise ValueError(f"{facts['bench_json']}: no bench run JSON (bench exit code {facts['bench_exit_code']})")
    runs = {run.label: run for run in load_runs(facts["bench_json"])}
    atomic_write_text(out / f"requests_{facts['opponent']}.csv", request_table(list(runs.values())))
    patched, other = runs[PATCHED], runs[facts["opponent"]]
    pm, om = round_metrics(patched, short_limit), round_metrics(other, short_limit)
    return {
        "rounds": {PATCHED: [asdict(m) for m in pm], facts["opponent"]: [asdict(m) for m in om]},
        "ratios": {name: ttft_ratio(pm, om, name).to_dict()
                   for name in ("ttft_mean", "ttft_short_mean", "ttft_long_mean")},
        "wait_bound": [c.to_dict() for c in wait_bound_checks(patched, pm, max_wait_s)],
        "opponent_ttft_max_s": [None if m.ttft_max is None else m.ttft_max / 1000 for m in om],
        "summaries": {label: {k: run.summary[k] for k in ("completed", "failed", "duration_s", "request_throughput",
                                                          "output_throughput")} | {"ttft_ms": run.summary["ttft_ms"]}
                      for label, run in runs.items()},
    }


def _ratio_target(issue: int, text: str, ratio: dict[str, Any], bound: float, strict: bool) -> dict[str, Any]:
    """Met only if every round's ratio meets the bound (one lucky or unlucky round cannot decide)."""
    low = ratio["min"]
    met = low is not None and (low > bound if strict else low >= bound)
    return {"issue": issue, "target": text, "pooled": ratio["pooled"], "min": low, "max": ratio["max"],
            "bound": bound, "met": met}


def targets(pairs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 4: short mean TTFT stock / patched >= 3, and the starvation bound; issue 7: opponent /
    patched mean TTFT > 1. Ratio targets count as met only when every round meets them."""
    out = []
    if "stock" in pairs:
        analysis = pairs["stock"]["analysis"]
        out.append(_ratio_target(4, "short requests' mean TTFT: stock SGLang (FCFS) / patched >= 3 in every round",
                                 analysis["ratios"]["ttft_short_mean"], 3.0, strict=False))
        checks = analysis["wait_bound"]
        out.append({"issue": 4, "target": "patched: every TTFT <= max_wait_s + one step (every round)",
                    "pooled": sum(c["over_bound"] for c in checks), "min": None, "max": None, "bound": 0,
                    "met": all(c["met"] for c in checks)})
    if "plugin" in pairs:
        out.append(_ratio_target(8, "mean TTFT: plugin without / with DP-controller late binding > 1 in every round",
                                 pairs["plugin"]["analysis"]["ratios"]["ttft_mean"], 1.0, strict=True))
    for opponent in ("stock", "vllm"):
        if opponent in pairs:
            out.append(_ratio_target(7, f"mean TTFT: {opponent} / patched > 1 in every round (patched beats {opponent})",
                                     pairs[opponent]["analysis"]["ratios"]["ttft_mean"], 1.0, strict=True))
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.comparisons.real_cpu",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--opponents", default="stock,vllm",
                        help="comma-separated, from: stock, vllm, plugin (the patched server without "
                             "late binding; needs --late-binding)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per pair (>= 3 for a spread)")
    w = parser.add_argument_group("workload (mixed_workload.MixedWorkload)")
    w.add_argument("--requests", type=int, default=384)
    w.add_argument("--rate", type=float, default=48.0,
                   help="offered requests/s (Poisson; 48 overloads both SGLang DP 2 servers here: at 96 offered "
                        "they completed 18-25 req/s)")
    w.add_argument("--long-fraction", type=float, default=0.25)
    w.add_argument("--short", default="32,160,4,16", help="prompt_min,prompt_max,output_min,output_max")
    w.add_argument("--long", default="1024,1900,16,48", help="prompt_min,prompt_max,output_min,output_max")
    w.add_argument("--seed", type=int, default=0, help="workload and prompt seed")
    e = parser.add_argument_group("engines (identical limits for all servers)")
    e.add_argument("--max-running", type=int, default=8, help="running requests in total (over DP ranks)")
    e.add_argument("--prefill-tokens", type=int, default=2048, help="prefill tokens per step (per rank)")
    e.add_argument("--dp-size", type=int, default=2, help="SGLang data-parallel ranks (1 or 2)")
    e.add_argument("--sglang-kv-tokens", type=int, default=16384, help="SGLang KV pool per rank (tokens)")
    e.add_argument("--snapshot-interval", type=int, default=None, metavar="N",
                   help="SGLang servers publish DP load snapshots every N decode steps "
                        "(--load-snapshot-publish-interval; default SGLang's 15)")
    p = parser.add_argument_group("plugin")
    p.add_argument("--max-wait-s", type=float, default=60.0, help="sjf-aging starvation bound (s)")
    p.add_argument("--aging-rate", type=float, default=3e-5,
                   help="sjf-aging seconds of job size forgiven per second waited; job sizes come from the "
                        "H100 step-model preset, far below this CPU's step times, so the default 0.003 "
                        "is scaled down 100x (see docs/real_cpu.md)")
    p.add_argument("--request-layer-only", action="store_true",
                   help="patched server: request ordering only; DP dispatch stays SGLang's round robin, as stock")
    p.add_argument("--no-preemption", action="store_true",
                   help="patched server: no preemption (order only); by default a waiting request may take the "
                        "running slot of one with --size-ratio x its steps of work left, or any once overdue")
    p.add_argument("--dp-controller-spin", action="store_true",
                   help="patched server: keep stock SGLang's spinning DP-controller loop (ablation of the "
                        "plugin's [dp_controller] block_when_idle)")
    p.add_argument("--size-ratio", type=float, default=2.0, help="preemption size ratio (> 1)")
    p.add_argument("--late-binding", type=int, default=None, metavar="N",
                   help="patched server: the DP controller holds requests while their rank has N running + "
                        "waiting requests and rebalances them ([dp_controller] late_binding)")
    p.add_argument("--no-moves", action="store_true",
                   help="with --late-binding: hold and release only, no rebalancing ([dp_controller.rebalance] "
                        "enabled = false)")
    p.add_argument("--oracle-max-tokens", action="store_true",
                   help="let the predictor cap estimates by max_tokens (= the true output length here)")
    o = parser.add_argument_group("output")
    o.add_argument("--out", default="results/real_cpu")
    o.add_argument("--log-dir", default="logs/real_cpu", help="server logs and full bench run JSON")
    o.add_argument("--cooldown", type=float, default=5.0, help="seconds between two replays")
    o.add_argument("--reanalyse", action="store_true",
                   help="start no server: recompute analysis, targets and report from --out/summary.json "
                        "and the bench run JSON it names")
    return parser


def _request_class(text: str, flag: str) -> RequestClass:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise ValueError(f"{flag}: expected four integers prompt_min,prompt_max,output_min,output_max, got {text!r}")
    return RequestClass(*values)


def _check(args: argparse.Namespace) -> tuple[list[str], EngineLimits, MixedWorkload]:
    opponents = [o.strip() for o in args.opponents.split(",") if o.strip()]
    if not opponents or set(opponents) - set(OPPONENTS):
        raise ValueError(f"--opponents: expected names among {', '.join(OPPONENTS)}, got {args.opponents!r}")
    if args.rounds < 1:
        raise ValueError(f"--rounds: expected >= 1, got {args.rounds}")
    if args.dp_size not in (1, 2) or args.max_running < args.dp_size or args.max_running % args.dp_size:
        raise ValueError("--dp-size: expected 1 or 2, and --max-running a positive multiple of it")
    if args.prefill_tokens < MAX_MODEL_LEN or args.sglang_kv_tokens < MAX_MODEL_LEN:
        raise ValueError(f"--prefill-tokens, --sglang-kv-tokens: expected >= {MAX_MODEL_LEN}")
    if args.snapshot_interval is not None and args.snapshot_interval < 1:
        raise ValueError(f"--snapshot-interval: expected an integer >= 1, got {args.snapshot_interval}")
    if not args.max_wait_s > 0 or not args.aging_rate >= 0:
        raise ValueError(f"--max-wait-s, --aging-rate: expected > 0 and >= 0, got {args.max_wait_s}, {args.aging_rate}")
    workload = MixedWorkload(args.requests, args.rate, args.long_fraction, _request_class(args.short, "--short"),
                             _request_class(args.long, "--long"), args.seed)
    if workload.long.prompt_max + workload.long.output_max > MAX_MODEL_LEN:
        raise ValueError(f"--long: prompt_max + output_max must be <= {MAX_MODEL_LEN}")
    if not args.size_ratio > 1:
        raise ValueError(f"--size-ratio: expected a number > 1, got {args.size_ratio}")
    if args.late_binding is not None and (args.late_binding < 1 or args.dp_size < 2 or args.request_layer_only):
        raise ValueError("--late-binding: expected an integer >= 1, with --dp-size 2 and the plugin's dispatch")
    if args.no_moves and args.late_binding is None:
        raise ValueError("--no-moves: expected --late-binding N as well")
    if "plugin" in opponents and args.late_binding is None:
        raise ValueError("--opponents plugin: compares against the patched server without late binding; "
                         "expected --late-binding N")
    limits = EngineLimits(args.max_running, args.prefill_tokens, args.dp_size, args.sglang_kv_tokens,
                          moesched_dispatch=not args.request_layer_only,
                          moesched_preemption=not args.no_preemption,
                          snapshot_interval=args.snapshot_interval)
    return opponents, limits, workload


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(f"real_cpu: stopped by signal {signum}; servers stopped")


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    """``summary.json`` and ``report.md`` (targets recomputed from the pairs' analyses)."""
    summary["targets"] = targets(summary["pairs"])
    atomic_write_json(out / "summary.json", summary, indent=1)
    atomic_write_text(out / "report.md", render_report(summary))
    print(f"[real_cpu] wrote {out / 'summary.json'}, {out / 'report.md'}")


def reanalyse(out: Path) -> int:
    """Recompute every pair's analysis from its bench run JSON and rewrite the outputs."""
    path = out / "summary.json"
    if not path.exists():
        raise ValueError(f"{path}: not found; run the comparison first")
    summary = json.loads(path.read_text())
    short_limit = summary["workload"]["short"]["prompt_max"]
    for facts in summary["pairs"].values():
        facts["analysis"] = analyse_pair(facts, short_limit, summary["max_wait_s"], out)
    write_summary(out, summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.reanalyse:
        try:
            return reanalyse(Path(args.out))
        except (ValueError, OSError, KeyError) as exc:
            print(f"real_cpu: error: {exc}", file=sys.stderr)
            return 2
    try:
        opponents, limits, workload = _check(args)
    except ValueError as exc:
        print(f"real_cpu: error: {exc}", file=sys.stderr)
        return 2
    if __name__ == "__main__":  # a killed run still stops its servers (the `finally` in run_pair)
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    Path(args.log_dir).mkdir(parents=True, exist_ok=True)
    trace = out / "workload.csv"
    rows = workload.write_csv(trace)
    moesched_config = (out / "moesched.toml").resolve()
    plugin_options = {"dispatch": not args.request_layer_only,
                      "preemption_ratio": None if args.no_preemption else args.size_ratio,
                      "dp_block_when_idle": not args.dp_controller_spin}
    atomic_write_text(moesched_config, moesched_toml(args.max_wait_s, args.aging_rate, args.oracle_max_tokens,
                                                    late_binding=args.late_binding,
                                                    late_binding_moves=not args.no_moves,
                                                    prefill_tokens=args.prefill_tokens, **plugin_options))
    load_config(moesched_config)  # refuse a bad plugin config before any server starts
    if "plugin" in opponents:
        atomic_write_text(plugin_config_path(moesched_config),
                          moesched_toml(args.max_wait_s, args.aging_rate, args.oracle_max_tokens, **plugin_options))
    pairs: dict[str, dict[str, Any]] = {}
    for opponent in opponents:
        facts = run_pair(args, opponent, limits, trace, moesched_config)
        facts["analysis"] = analyse_pair(facts, workload.short_prompt_limit, args.max_wait_s, out)
        pairs[opponent] = facts
    summary = {
        "command": [sys.executable, "-m", "experiments.comparisons.real_cpu"] + (argv if argv is not None else sys.argv[1:]),
        "workload": {**asdict(workload), "short_requests": sum(not r[3] for r in rows),
                     "long_requests": sum(r[3] for r in rows), "last_arrival_s": rows[-1][0],
                     "output_tokens": sum(r[2] for r in rows), "prompt_tokens": sum(r[1] for r in rows)},
        "limits": asdict(limits), "max_model_len": MAX_MODEL_LEN, "max_wait_s": args.max_wait_s, "aging_rate": args.aging_rate,
        "predictor_capped_by_max_tokens": args.oracle_max_tokens, "rounds": args.rounds,
        "dp_controller_blocking": not args.dp_controller_spin, "late_binding_max_in_flight": args.late_binding,
        "late_binding_moves": args.late_binding is not None and not args.no_moves,
        "pairs": pairs,
    }
    write_summary(out, summary)
    return 0 if all(f.get("bench_exit_code") == 0 for f in pairs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
