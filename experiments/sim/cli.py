"""``moesched simulate``: replay a workload on simulated engines and write the run JSON.

    moesched simulate --trace data/traces/azure2023_conv.csv --format azure --engines 8 \\
        --rate 40 --max-requests 5000 --gpu-model qwen3-30b-a3b-h100 \\
        --config fcfs-rr:policy=fcfs,dispatch=round-robin \\
        --config ours:policy=sjf-aging,dispatch=scored --out sim.json --markdown sim.md

Each ``--config LABEL:key=value,...`` is one run on the same workload; keys override the
command-line defaults: ``policy``, ``dispatch``, ``engines``, ``max_running``,
``max_batched_tokens``, ``kv_capacity_tokens``, ``prefix_caching``, ``admit_whole_prompt``,
``mixed_chunk``, ``decode_reservation``, ``learnt_headroom`` and ``deferred_output`` (true/false), ``prefill_order``
(admission/policy),
``load_refresh_s``, ``placement`` (a placement JSON; needs ``--routing-stats``), ``ep_execution``
(the placement's expert-parallel execution model, see ``--ep-execution``). Without
``--config`` one run is made from the command-line values. The output has the same schema, Markdown
and plots as ``moesched bench``. Exit 0 when every request completed, 1 when some failed (e.g.
longer than the KV capacity), 2 on bad input.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine_dispatch.factory import create_dispatcher, dispatcher_names
from expert_sched.metrics import DEFAULT_EXECUTION_MODEL, EXECUTION_MODELS
from experiments.metrics.runs import RunResult
from experiments.metrics.summary import Slo
from experiments.report.outputs import add_output_arguments, slo_from_args, write_run_outputs
from experiments.sim.cluster import simulate
from experiments.sim.config import PREFILL_ORDERS, ClusterConfig, EngineConfig
from experiments.sim.results import run_result
from experiments.workloads.cli_args import add_workload_arguments, workload_record, workload_spec_from_args
from experiments.workloads.load import load_workload
from experiments.workloads.types import BLOCK_TOKENS, TraceRequest
from perf_model.batch import MoeFactors, StepTimeModel
from perf_model.model_file import resolve_model, resolve_request_overhead
from perf_model.presets import preset_names
from perf_model.request_overhead import RequestOverhead
from request_sched.policies import POLICY_NAMES, create_queue


@dataclass(frozen=True)
class RunSpec:
    """One simulated configuration (what a ``--config`` names)."""

    label: str
    policy: str
    dispatch: str
    engines: int
    engine: EngineConfig
    load_refresh_s: float
    placement: str | None
    ep_execution: str = DEFAULT_EXECUTION_MODEL


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``moesched simulate``."""
    add_workload_arguments(parser, seed_also="random dispatchers")
    c = parser.add_argument_group("cluster (defaults of every --config)")
    c.add_argument("--engines", type=int, default=1, help="number of engines")
    c.add_argument("--policy", default="fcfs", choices=POLICY_NAMES, help="request policy per engine")
    c.add_argument("--dispatch", default="round-robin", choices=dispatcher_names(), help="dispatcher")
    c.add_argument("--dispatch-config", help="TOML config of the scored dispatcher")
    c.add_argument("--gpu-model", default="qwen3-30b-a3b-h100",
                   help=f"step model: a preset ({', '.join(preset_names())}) or a coefficients JSON "
                        "from 'moesched calibrate'")
    c.add_argument("--request-overhead-ms", type=float,
                   help="per-request latency outside engine steps (sent -> queued), ms; default: the "
                        "--gpu-model file's request_overhead (0 for presets)")
    c.add_argument("--max-running", type=int, default=256, help="running requests per engine at most")
    c.add_argument("--max-batched-tokens", type=int, default=8192, help="tokens per engine step at most")
    c.add_argument("--kv-capacity-tokens", type=int, default=160_000, help="KV-cache tokens per engine")
    c.add_argument("--no-prefix-caching", action="store_true", help="turn the prefix cache off")
    c.add_argument("--admit-first-chunk", action="store_true",
                   help="admit when the first prefill chunk fits in KV (vLLM V1) instead of the whole prompt (SGLang)")
    c.add_argument("--prefill-order", choices=PREFILL_ORDERS, default="admission",
                   help="step forming: 'admission' (vLLM V1: unfinished prefills continue first, the policy "
                        "orders admission) or 'policy' (SGLang 0.5.23: each prefill batch is taken from the "
                        "waiting queue in policy order and runs before the decodes)")
    c.add_argument("--mixed-chunk", action="store_true",
                   help="with --prefill-order policy: decodes join prefill steps (SGLang --enable-mixed-chunk)")
    c.add_argument("--decode-reservation", action="store_true",
                   help="with --prefill-order policy: admit only with SGLang's headroom for running requests' "
                        "future decode tokens (max_new_tokens x new_token_ratio)")
    c.add_argument("--learnt-headroom", action="store_true",
                   help="with --decode-reservation: clip that headroom at a quantile of the engine's recent "
                        "outputs (the moesched plugin's [request.headroom]) instead of 4,096 tokens")
    c.add_argument("--deferred-output", action="store_true",
                   help="a step's tokens are output when the next step ends (SGLang's overlap scheduler on a CPU)")
    c.add_argument("--load-refresh-s", type=float, default=0.0,
                   help="seconds between the dispatcher's load snapshots (0 = always current)")
    c.add_argument("--tpot-slo-budget-ms", type=float,
                   help="cap each step's prefill so the predicted step stays within this TPOT (ms)")
    m = parser.add_argument_group("expert placement")
    m.add_argument("--placement", help="placement JSON (physical_to_logical_map) whose MoE factors the engines run with")
    m.add_argument("--routing-stats", help="routing statistics the placement is evaluated on")
    m.add_argument("--routing-domain", help="domain of a bundled OLMoE/Mixtral routing file")
    m.add_argument("--ep-gpus", type=int, default=8, help="GPUs the placement spreads experts over")
    m.add_argument("--ep-nodes", type=int, default=1, help="nodes of those GPUs")
    m.add_argument("--ep-execution", choices=EXECUTION_MODELS, default=DEFAULT_EXECUTION_MODEL,
                   help="where a token is dispatched from: its home GPU (deepep-low-latency, SGLang + DeepEP) "
                        "or the GPU of its previous layer's top-1 expert (affinity, ExFlow-style; needs "
                        "transitions in --routing-stats); sets the placement's cross-GPU share")
    o = add_output_arguments(parser, runs="run")
    o.add_argument("--config", action="append", default=[], metavar="LABEL:key=value,...",
                   help="a run; repeat for several (see module help for keys)")
    o.add_argument("--itl", action="store_true", help="store per-request ITL lists in the records (large)")


_BOOL = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _parse_config(text: str, default: RunSpec) -> RunSpec:
    """``LABEL:key=value,...`` -> a :class:`RunSpec` overriding ``default``."""
    label, sep, body = text.partition(":")
    if not label or not sep and body:
        raise ValueError(f"--config {text!r}: expected LABEL:key=value,...")
    spec = replace(default, label=label)
    engine_changes: dict[str, Any] = {}
    for item in filter(None, body.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"--config {label}: expected key=value, got {item!r}")
        try:
            if key in ("policy", "dispatch", "placement", "ep_execution"):
                spec = replace(spec, **{key: value})
            elif key == "engines":
                spec = replace(spec, engines=int(value))
            elif key == "load_refresh_s":
                spec = replace(spec, load_refresh_s=float(value))
            elif key in ("max_running", "max_batched_tokens", "kv_capacity_tokens"):
                engine_changes[key] = int(value)
            elif key in ("prefix_caching", "admit_whole_prompt", "mixed_chunk", "decode_reservation",
                         "learnt_headroom", "deferred_output"):
                engine_changes[key] = _BOOL[value.lower()]
            elif key == "prefill_order":
                if value not in PREFILL_ORDERS:
                    raise ValueError(f"expected one of {', '.join(PREFILL_ORDERS)}")
                engine_changes[key] = value
            else:
                raise ValueError(f"unknown key {key!r}")
        except (KeyError, ValueError) as exc:
            raise ValueError(f"--config {label}: bad {item!r} ({exc})") from None
    if spec.policy not in POLICY_NAMES:
        raise ValueError(f"--config {label}: policy {spec.policy!r}: expected one of {', '.join(POLICY_NAMES)}")
    if spec.ep_execution not in EXECUTION_MODELS:
        raise ValueError(f"--config {label}: ep_execution {spec.ep_execution!r}: expected one of "
                         f"{', '.join(EXECUTION_MODELS)}")
    if spec.dispatch not in dispatcher_names():
        raise ValueError(f"--config {label}: dispatch {spec.dispatch!r}: expected one of "
                         f"{', '.join(dispatcher_names())}")
    return replace(spec, engine=replace(spec.engine, **engine_changes))


def request_overhead(args: argparse.Namespace) -> RequestOverhead:
    """``--request-overhead-ms`` (as enqueue time), else the ``--gpu-model`` file's overhead."""
    if args.request_overhead_ms is None:
        return resolve_request_overhead(args.gpu_model)
    if not args.request_overhead_ms >= 0:
        raise ValueError(f"--request-overhead-ms: expected >= 0, got {args.request_overhead_ms}")
    return RequestOverhead(enqueue_s=args.request_overhead_ms / 1e3)


def run_specs(args: argparse.Namespace, model: StepTimeModel) -> list[RunSpec]:
    """The runs the command line asks for (one per ``--config``, or one from the defaults)."""
    budget = None
    if args.tpot_slo_budget_ms is not None:
        from request_sched.token_budget import SloTokenBudget
        budget = SloTokenBudget(model, args.tpot_slo_budget_ms / 1e3, max_budget=args.max_batched_tokens,
                                min_budget=min(256, args.max_batched_tokens))
    engine = EngineConfig(max_running=args.max_running, max_batched_tokens=args.max_batched_tokens,
                          kv_capacity_tokens=args.kv_capacity_tokens,
                          prefix_caching=not args.no_prefix_caching,
                          admit_whole_prompt=not args.admit_first_chunk, budget=budget,
                          prefill_order=args.prefill_order, mixed_chunk=args.mixed_chunk,
                          decode_reservation=args.decode_reservation,
                          learnt_headroom=args.learnt_headroom, deferred_output=args.deferred_output,
                          request_overhead=request_overhead(args))
    default = RunSpec(label=f"{args.policy}+{args.dispatch}", policy=args.policy, dispatch=args.dispatch,
                      engines=args.engines, engine=engine, load_refresh_s=args.load_refresh_s,
                      placement=args.placement, ep_execution=args.ep_execution)
    specs = [_parse_config(text, default) for text in args.config] or [default]
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"--config: labels must be unique, got {', '.join(labels)}")
    if args.baseline is not None and args.baseline not in labels:
        raise ValueError(f"--baseline: expected one of {', '.join(labels)}, got {args.baseline!r}")
    return specs


def _dispatcher_options(name: str, args: argparse.Namespace, model: StepTimeModel) -> dict[str, Any]:
    if name == "power-of-two":
        return {"seed": args.seed}
    if name == "scored":
        return {"step_model": model, "block_tokens": BLOCK_TOKENS, "config_path": args.dispatch_config}
    return {}


def simulate_spec(spec: RunSpec, requests: list[TraceRequest], model: StepTimeModel,
                  args: argparse.Namespace, slo: Slo) -> RunResult:
    """Simulate one configuration and return its run."""
    moe: MoeFactors | None = None
    if spec.placement is not None:
        if not args.routing_stats:
            raise ValueError("--placement needs --routing-stats (the routing it is evaluated on)")
        from experiments.sim.placement import placement_moe_factors
        moe = placement_moe_factors(spec.placement, args.routing_stats, args.ep_gpus, args.ep_nodes,
                                    args.routing_domain, spec.ep_execution)
    cluster = ClusterConfig(engines=spec.engines, engine=spec.engine,
                            queue_factory=lambda: create_queue(spec.policy),
                            load_refresh_s=spec.load_refresh_s, moe=moe)
    dispatcher = create_dispatcher(spec.dispatch, spec.engines, **_dispatcher_options(spec.dispatch, args, model))
    started = time.perf_counter()
    result = simulate(requests, cluster, model, dispatcher)
    wall = time.perf_counter() - started
    engine = spec.engine
    config = {
        "simulator": True, "gpu_model": args.gpu_model, "policy": spec.policy, "dispatch": spec.dispatch,
        "engines": spec.engines, "max_running": engine.max_running,
        "max_batched_tokens": engine.max_batched_tokens, "kv_capacity_tokens": engine.kv_capacity_tokens,
        "prefix_caching": engine.prefix_caching, "admit_whole_prompt": engine.admit_whole_prompt,
        "prefill_order": engine.prefill_order, "mixed_chunk": engine.mixed_chunk,
        "decode_reservation": engine.decode_reservation, "learnt_headroom": engine.learnt_headroom,
        "deferred_output": engine.deferred_output, "load_refresh_s": spec.load_refresh_s, "request_overhead": engine.request_overhead.to_dict(),
        "tpot_slo_budget_ms": args.tpot_slo_budget_ms, "placement": spec.placement,
        "ep_execution": None if spec.placement is None else spec.ep_execution,
        "moe": None if moe is None else {"imbalance": moe.imbalance, "remote_fraction": moe.remote_fraction},
        "workload": workload_record(args, len(requests)),
        "simulation_wall_s": wall,
    }
    return run_result(result, spec.label, config, slo, include_itl=args.itl)


def run(args: argparse.Namespace) -> int:
    """Simulate every configuration; see the module docstring for exit codes."""
    for name in ("engines", "max_requests"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected an integer >= 1, got {value}")
    model = resolve_model(args.gpu_model)
    specs = run_specs(args, model)
    requests = load_workload(workload_spec_from_args(args))
    slo = slo_from_args(args)
    runs = []
    for spec in specs:
        run_ = simulate_spec(spec, requests, model, args, slo)
        s = run_.summary
        print(f"{spec.label}: {s['completed']} ok, {s['failed']} failed, TTFT mean {_ms(s['ttft_ms']['mean'])} "
              f"p99 {_ms(s['ttft_ms']['p99'])}, TPOT mean {_ms(s['tpot_ms']['mean'])}, "
              f"{s['output_throughput']:.0f} out tok/s, {s['preemptions']} preemptions "
              f"({run_.config['simulation_wall_s']:.1f} s)")
        runs.append(run_)
    print(write_run_outputs(args, runs, f"moesched simulate ({args.gpu_model}): {Path(args.trace).name}"))
    return 0 if all(r.summary["failed"] == 0 for r in runs) else 1


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"
