"""``moesched bench``: replay a workload against real OpenAI-compatible endpoints and report.

    moesched bench --trace data/traces/azure2023_conv.csv --format azure \\
        --endpoint vllm=http://127.0.0.1:8000 --endpoint sglang=http://127.0.0.1:30000 \\
        --tokenizer models/tiny-qwen3-moe --rate 4 --max-requests 200 --repeat 3 \\
        --slo-ttft-ms 500 --slo-tpot-ms 50 --out run.json --markdown run.md --plots plots/

Exit codes: 0 when every request completed, 1 when some failed (their records say why), 2 on bad
input or an endpoint that is down at start (one line on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from experiments.bench.endpoints import APIS, Endpoint, parse_endpoint, preflight
from experiments.bench.pause import ServerPauser
from experiments.bench.prompts import PromptSynthesizer, load_tokenizer
from experiments.bench.replay import ReplayOptions, ReplayResult, replay_all
from experiments.metrics.runs import RunResult
from experiments.metrics.summary import Slo, summarize
from experiments.report.outputs import add_output_arguments, slo_from_args, write_run_outputs
from experiments.workloads.cli_args import add_workload_arguments, workload_record, workload_spec_from_args
from experiments.workloads.load import load_workload
from experiments.workloads.types import TraceRequest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``moesched bench``."""
    add_workload_arguments(parser, seed_also="prompt content")
    e = parser.add_argument_group("endpoints")
    e.add_argument("--endpoint", action="append", required=True, metavar="LABEL=URL",
                   help="server to replay against; repeat for several (same URL under two labels is allowed)")
    e.add_argument("--model", help="model name to request (default: each endpoint's first served model)")
    e.add_argument("--tokenizer", required=True, metavar="DIR", help="directory with the servers' tokenizer.json")
    e.add_argument("--api", choices=APIS, default="completions",
                   help="completions: /v1/completions (any OpenAI server); generate: SGLang's /generate")
    e.add_argument("--priority-lower-first", action="append", default=[], metavar="LABEL",
                   help="endpoint whose server treats lower priority values as more urgent (vLLM): "
                        "the workload's priorities are negated for it")
    r = parser.add_argument_group("replay")
    r.add_argument("--repeat", type=int, default=1, help="rounds; each round replays on every endpoint, order rotated")
    r.add_argument("--request-timeout", type=float, default=600.0, help="seconds one request may take")
    r.add_argument("--stall-timeout", type=float, default=120.0, help="seconds of stream silence before failing")
    r.add_argument("--cooldown", type=float, default=1.0, help="seconds of pause between two replays")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--pause-idle", action="append", default=[], metavar="LABEL=PGID",
                   help="process group of the server behind endpoint LABEL: stopped (SIGSTOP) while other "
                        "endpoints are replayed, continued before its own replay and at exit; for servers "
                        "sharing one small host, where an idle server can still spin a core")
    add_output_arguments(parser, runs="endpoint")


def _endpoints(args: argparse.Namespace) -> list[Endpoint]:
    endpoints = [parse_endpoint(text) for text in args.endpoint]
    labels = [ep.label for ep in endpoints]
    if len(set(labels)) != len(labels):
        raise ValueError(f"--endpoint: labels must be unique, got {', '.join(labels)}")
    unknown = set(args.priority_lower_first) - set(labels)
    if unknown:
        raise ValueError(f"--priority-lower-first: expected endpoint labels, got {', '.join(sorted(unknown))}")
    if args.baseline is not None and args.baseline not in labels:
        raise ValueError(f"--baseline: expected one of {', '.join(labels)}, got {args.baseline!r}")
    return [Endpoint(ep.label, ep.url, priority_lower_first=ep.label in args.priority_lower_first) for ep in endpoints]


def _pause_groups(items: list[str], labels: list[str]) -> dict[str, int]:
    """``--pause-idle LABEL=PGID`` items as endpoint label -> process group id."""
    groups = {}
    for text in items:
        label, _, pgid = text.partition("=")
        if label not in labels or not pgid.isdigit():
            raise ValueError(f"--pause-idle: expected LABEL=PGID with an endpoint label and a process "
                             f"group number, got {text!r}")
        groups[label] = int(pgid)
    return groups


def _check_numbers(args: argparse.Namespace) -> None:
    if args.repeat < 1:
        raise ValueError(f"--repeat: expected an integer >= 1, got {args.repeat}")
    for name in ("slo_ttft_ms", "slo_tpot_ms", "request_timeout", "stall_timeout"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise ValueError(f"--{name.replace('_', '-')}: expected a number > 0, got {value}")
    if args.cooldown < 0:
        raise ValueError(f"--cooldown: expected a number >= 0, got {args.cooldown}")


def _config(args: argparse.Namespace, endpoint: Endpoint, requests: list[TraceRequest],
            rounds: list[ReplayResult]) -> dict[str, Any]:
    return {
        "endpoint": endpoint.url, "model": endpoint.model, "api": args.api,
        "priority_lower_first": endpoint.priority_lower_first,
        "workload": workload_record(args, len(requests)),
        "repeat": args.repeat, "tokenizer": args.tokenizer, "client_host": platform.node(),
        "host_load_avg_1m": [list(res.load_avg_1m) for res in rounds],
        "round_start_monotonic_s": [res.start_monotonic_s for res in rounds],
        "options": {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, list, type(None)))},
    }


def build_runs(args: argparse.Namespace, endpoints: list[Endpoint], requests: list[TraceRequest],
               results: list[ReplayResult], slo: Slo) -> list[RunResult]:
    """Pool each endpoint's rounds into one :class:`RunResult` (per-round summaries in ``repeats``)."""
    runs = []
    for ep in endpoints:
        mine = sorted((res for res in results if res.endpoint.label == ep.label), key=lambda res: res.repeat)
        records = [rec for res in mine for rec in res.records]
        summary = summarize(records, sum(res.duration_s for res in mine), slo)
        repeats = [summarize(res.records, res.duration_s, slo) for res in mine] if len(mine) > 1 else []
        runs.append(RunResult(ep.label, _config(args, ep, requests, mine), summary, records, repeats))
    return runs


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; see the module docstring for exit codes."""
    _check_numbers(args)
    endpoints = _endpoints(args)
    pauser = ServerPauser(_pause_groups(args.pause_idle, [ep.label for ep in endpoints]))
    requests = load_workload(workload_spec_from_args(args))
    tokenizer = load_tokenizer(args.tokenizer)
    PromptSynthesizer(tokenizer, args.seed).text(requests[0])  # fail fast on an unsuitable tokenizer
    endpoints = asyncio.run(preflight(endpoints, args.model))
    slo = slo_from_args(args)
    options = ReplayOptions(api=args.api, repeat=args.repeat, seed=args.seed, request_timeout_s=args.request_timeout,
                            stall_timeout_s=args.stall_timeout, cooldown_s=args.cooldown)

    def make_prompts(reqs: list[TraceRequest], seed: int) -> list[str]:
        synth = PromptSynthesizer(tokenizer, seed)
        return [synth.text(req) for req in reqs]

    def on_start(endpoint: Endpoint, round_index: int) -> None:
        pauser.activate(endpoint.label)
        bar.set_description(f"{endpoint.label} round {round_index + 1}/{args.repeat}")

    total = len(requests) * len(endpoints) * args.repeat
    with tqdm(total=total, unit="req", disable=args.no_progress, file=sys.stderr) as bar:
        try:
            results = asyncio.run(replay_all(endpoints, requests, make_prompts, options,
                                             on_done=lambda: bar.update(1), on_start=on_start))
        finally:
            pauser.resume_all()
    runs = build_runs(args, endpoints, requests, results, slo)
    wrote = write_run_outputs(args, runs, f"moesched bench: {Path(args.trace).name}")
    failed = 0
    for run_ in runs:
        s = run_.summary
        failed += s["failed"]
        ttft, tpot = s["ttft_ms"]["mean"], s["tpot_ms"]["mean"]
        print(f"{run_.label}: {s['completed']} ok, {s['failed']} failed, mean TTFT "
              f"{'n/a' if ttft is None else f'{ttft:.1f}'} ms, mean TPOT {'n/a' if tpot is None else f'{tpot:.2f}'} ms, "
              f"{s['output_throughput']:.1f} output tok/s")
    print(wrote)
    if failed:
        first = next(r.error for run_ in runs for r in run_.requests if r.error)
        print(f"moesched bench: {failed} request(s) failed; first error: {first}", file=sys.stderr)
        return 1
    return 0
