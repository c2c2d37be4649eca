"""Issue 7's simulated cluster: vanilla vLLM, stock SGLang, each moesched layer alone, all three.

    python -m experiments.comparisons.full_stack [--cluster ep8|ep2] [--quick] [--out DIR]

Clusters (``--cluster``, default ``ep8``: wide expert parallelism, where a placement matters).
Both: 4 data-parallel engines by default, prefix caching on, load reports 0.5 s stale, per engine
1,024 running requests and 8,192 tokens per step (ml-energy's vLLM ``max-num-batched-tokens``):

- ``ep2`` (results/comparisons/full_stack): each engine Qwen3-30B-A3B on 2 x H100 with expert
  parallelism 2 (step model preset ``qwen3-30b-a3b-2xh100-ep2``); KV 770,000 tokens per engine =
  2 GPUs x (0.9 x 80 GB - 30.5 GB weights - ~3 GB activations) / 96 KiB per token (77.0 GB /
  98,304 B = 783k; 770k used).
- ``ep8`` (results/comparisons/full_stack_ep8): each engine Qwen3-235B-A22B on 8 x H100 with expert
  parallelism 8 (preset ``qwen3-235b-a22b-8xh100-ep8``); KV 420,000 tokens per engine = 8 GPUs x
  (0.9 x 80 GB - 58.8 GB weights (235B x 2 B / 8) - ~3 GB activations) / 188 KiB per token
  (81.6 GB / 192,512 B = 424k, rounded down). That is SGLang's DP-attention layout (each GPU holds
  its own requests' KV); vLLM's TP8 attention replicates the 4 KV heads twice and would hold half,
  which the ``vllm`` stack is not charged (in its favour).

Simplification at EP8: an engine's 8 DP-attention ranks are one scheduler with one batch (as vLLM
runs TP8), not 8 lock-stepped ranks with their own queues.

Token budget default: EP2's decode steps are 27-35 ms at batch 128-256 (public rows), so a 50 ms
TPOT budget leaves room for prefill; EP8's are 46.6-55.5 ms at batch 128-228, so 50 ms is
unreachable by decode alone and starves prefill (Azure conv mean TTFT 8.4-9.7x of vllm, measured);
60 ms is the first 10 ms step above the batch-228 row.

Expert placements are solved on routing statistics (default: the bundled OLMoE arxiv counts, a
stand-in: no Qwen3 routing data is bundled) for the expert-parallel GPUs of an engine
(:mod:`.placements`), 0 redundant replicas by default (SGLang's default). ``--num-redundant N``
gives EPLB and the solver N replicas and charges their weights to those stacks' KV
(:func:`redundant_expert_kv_tokens` each: at EP8 one replica per GPU, N = 8, costs 147k of the
420k tokens). The presets were fitted to vLLM without EPLB, so their MoE terms are anchored at
the trivial placement's imbalance (``placements.anchored_model``): only a placement better than
vLLM's changes step times.

Expert-parallel execution model (``expert_sched.metrics.EXECUTION_MODELS``): every stack runs
``deepep-low-latency`` (SGLang with DP attention + DeepEP: a token's GPU is independent of its
experts, so co-location saves no traffic) except the ``@affinity*`` rows of the placement ablation
(EPLB vs solver): ``@affinity`` runs ``affinity`` (ExFlow-style: a token continues on the GPU of
its previous layer's top-1 expert, which no SGLang release does; it shows what co-location buys if
the runtime kept tokens there); ``@affinity-decode`` is the same with the placement's traffic
reaching decode tokens only (:class:`.placements.DecodeOnlyPlacementTraffic`: SGLang's prefill
uses DeepEP normal mode, one copy per destination GPU whatever the placement). The
``@stream-floor`` rows run :class:`.placements.ExpertStreamFloor`: a placement cannot push the
per-expert weight-streaming cost below its HBM roofline (binds at EP8 only).

Stacks (same requests, same hardware). Step forming (``Stack.prefill_order``, ``mixed_chunk``;
:mod:`experiments.sim.engine`): ``vllm`` runs vLLM V1's (every step mixes decodes with prefill
chunks, first-chunk admission); every other stack runs SGLang 0.5.23's (prefill batches taken in
the request policy's order run before the decodes, whole-prompt admission with SGLang's headroom
for running requests' future decode tokens, ``decode_reservation``), without mixed chunk (SGLang's
default) unless the label says ``+mixed-chunk`` (``--enable-mixed-chunk``).

| label | request policy | dispatch | placement | admission |
|---|---|---|---|---|
| vllm | fcfs | round-robin | trivial | first chunk (V1) |
| sglang | fcfs | round-robin | eplb | whole prompt |
| sglang-no-eplb | fcfs | round-robin | trivial (launch without ``--enable-eplb``) | whole prompt |
| sglang+mixed-chunk | fcfs | round-robin | eplb, launched with ``--enable-mixed-chunk`` | whole prompt |
| sglang+request | sjf-aging | round-robin | eplb | whole prompt |
| sglang+dispatch | fcfs | scored | eplb | whole prompt |
| sglang+placement | fcfs | round-robin | solver | whole prompt |
| moesched | sjf-aging | scored | solver | whole prompt |
| moesched+mixed-chunk | sjf-aging, ``--enable-mixed-chunk`` | scored | solver | whole prompt |
| moesched+mixed-chunk+budget | the same + SLO prefill token budget (TPOT 50 ms at ep2, 60 ms at ep8) | scored | solver | whole prompt |
| sglang@affinity, sglang+placement@affinity | fcfs | round-robin | eplb, solver (affinity execution) | whole prompt |
| sglang@affinity-decode, sglang+placement@affinity-decode | fcfs | round-robin | eplb, solver (affinity, decode tokens only) | whole prompt |
| sglang, sglang+mixed-chunk, moesched, moesched+mixed-chunk ``@stream-floor`` | as without the suffix | | | |

Capacity per trace: saturating run of the ``vllm`` stack (:mod:`.capacity`); offered load
``--load`` x that. Targets (issue 7) on Azure conv and Mooncake, for the :data:`TARGET_STACKS`:
mean TTFT <= 0.5x vllm, mean TPOT <= 0.7x vllm, output throughput >= 1.0x vllm.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from experiments.comparisons.cli_common import add_common_arguments, parse_common, progress, replays, script_main
from experiments.comparisons.placements import (
    DecodeOnlyPlacementTraffic, ExpertStreamFloor, PlacementSet, anchored_model, build_placements, factor_key,
)
from experiments.comparisons.report import (
    Target, comparison_table, metric, publish, ratio_bars, ratio_target, targets_table, trace_runs,
)
from experiments.comparisons.stack import Cluster, Stack, run_stack
from experiments.metrics.runs import RunResult
from experiments.sim.config import EngineConfig
from expert_sched.metrics import DEFAULT_EXECUTION_MODEL, EXECUTION_MODELS
from perf_model.presets import DEPLOYMENTS, preset_model



@dataclass(frozen=True)
class ClusterSpec:
    """One simulated deployment: the step-model preset of an engine, its expert-parallel GPUs,
    its limits, the default TPOT SLO of the request layer's prefill token budget (ms; it must sit
    above the engine's decode-only step at the batches it runs, see the module docstring) and where
    its results go by default (KV arithmetic in the module docstring)."""

    gpu_model: str
    ep_gpus: int
    engine: EngineConfig
    tpot_budget_ms: float
    out: str


CLUSTERS: dict[str, ClusterSpec] = {
    "ep2": ClusterSpec("qwen3-30b-a3b-2xh100-ep2", 2,
                       EngineConfig(max_running=1024, max_batched_tokens=8192, kv_capacity_tokens=770_000),
                       50.0, "results/comparisons/full_stack"),
    "ep8": ClusterSpec("qwen3-235b-a22b-8xh100-ep8", 8,
                       EngineConfig(max_running=1024, max_batched_tokens=8192, kv_capacity_tokens=420_000),
                       60.0, "results/comparisons/full_stack_ep8"),
}
DEFAULT_CLUSTER = "ep8"
TARGET_TRACES = ("azure-conv", "mooncake")
BASELINE = "vllm"
OURS = "moesched"
#: the placement ablation: stack labels with EPLB and with the solver (else identical)
ABLATION = ("sglang", "sglang+placement")
#: ablation variants: (name, execution model, does the placement's traffic reach prefill tokens)
ABLATION_VARIANTS = (("deepep-low-latency", "deepep-low-latency", True), ("affinity", "affinity", True),
                     ("affinity-decode", "affinity", False))
#: stacks re-run with the placement's weight-streaming gain floored at the roofline
STREAM_FLOOR = "stream-floor"
STREAM_FLOOR_STACKS = ("sglang", "sglang+mixed-chunk", OURS, f"{OURS}+mixed-chunk")
#: stacks checked against issue 7's targets (vs BASELINE)
TARGET_STACKS = (OURS, f"{OURS}+mixed-chunk", f"{OURS}+mixed-chunk+budget", f"{OURS}+mixed-chunk+budget+headroom",
                 f"{OURS}@{STREAM_FLOOR}", f"{OURS}+mixed-chunk@{STREAM_FLOOR}")


def redundant_expert_kv_tokens(gpu_model: str) -> int:
    """KV tokens one redundant expert replica displaces: its gate/up/down weights at every layer
    (BF16) over the KV bytes of a token (EP8: 94 x 37.7 MB = 3.55 GB / 192,512 B = 18,432)."""
    shape = DEPLOYMENTS[gpu_model].shape
    expert_bytes = shape.layers * 3 * shape.hidden * shape.expert_ffn * shape.bytes_per_param
    return -(-expert_bytes // shape.kv_bytes_per_token)


def ablation_label(label: str, variant: str) -> str:
    """Stack label of ablation stack ``label`` in ``variant`` (the plain label for the default model)."""
    return label if variant == DEFAULT_EXECUTION_MODEL else f"{label}@{variant}"


def stacks(tpot_budget_ms: float) -> list[Stack]:
    main = _main_stacks(tpot_budget_ms)
    floored = [replace(stack, label=f"{stack.label}@{STREAM_FLOOR}") for stack in main
               if stack.label in STREAM_FLOOR_STACKS]
    return main + floored


def _main_stacks(tpot_budget_ms: float) -> list[Stack]:
    # SGLang 0.5.23 step forming with its admission headroom for future decode tokens; stock: no mixed chunk
    sglang = {"prefill_order": "policy", "decode_reservation": True}
    return [
        Stack("vllm", placement="trivial", admit_whole_prompt=False),
        Stack("sglang", placement="eplb", **sglang),
        Stack("sglang-no-eplb", placement="trivial", **sglang),
        Stack("sglang+mixed-chunk", placement="eplb", mixed_chunk=True, **sglang),
        Stack("sglang+request", policy="sjf-aging", placement="eplb", **sglang),
        Stack("sglang+dispatch", dispatch="scored", placement="eplb", **sglang),
        Stack("sglang+placement", placement="solver", **sglang),
        Stack(OURS, policy="sjf-aging", dispatch="scored", placement="solver", **sglang),
        Stack(f"{OURS}+mixed-chunk", policy="sjf-aging", dispatch="scored", placement="solver",
              mixed_chunk=True, **sglang),
        Stack(f"{OURS}+mixed-chunk+budget", policy="sjf-aging", dispatch="scored", placement="solver",
              mixed_chunk=True, tpot_budget_ms=tpot_budget_ms, **sglang),
        Stack(f"{OURS}+mixed-chunk+budget+headroom", policy="sjf-aging", dispatch="scored", placement="solver",
              mixed_chunk=True, tpot_budget_ms=tpot_budget_ms, learnt_headroom=True, **sglang),
        *(Stack(ablation_label(label, variant), placement=factor_key(placement, execution), **sglang)
          for variant, execution, _ in ABLATION_VARIANTS if variant != DEFAULT_EXECUTION_MODEL
          for label, placement in zip(ABLATION, ("eplb", "solver"))),
    ]


def trace_targets(scope: str, runs: dict[str, RunResult]) -> list[Target]:
    base = runs[BASELINE]
    targets = []
    for label in TARGET_STACKS:
        ours = runs[label]
        targets += [ratio_target(scope, ours, base, "ttft_ms.mean", 0.5),
                    ratio_target(scope, ours, base, "tpot_ms.mean", 0.7),
                    ratio_target(scope, ours, base, "output_throughput", 1.0, at_least=True)]
    return targets


def placement_table(placements: PlacementSet) -> str:
    """Per placement: imbalance, remote share under each execution model, balancedness, co-location."""
    remote_heads = " | ".join(f"remote share ({execution})" for execution in EXECUTION_MODELS)
    lines = [f"| placement | MoE imbalance (max/mean GPU load) | {remote_heads} | balancedness (SGLang) | co-location |",
             "|---|---|" + "---|" * len(EXECUTION_MODELS) + "---|---|"]
    for name, factors in placements.factors[DEFAULT_EXECUTION_MODEL].items():
        m = placements.metrics[name]
        remotes = " | ".join(f"{placements.factors[execution][name].remote_fraction:.3f}"
                             for execution in EXECUTION_MODELS)
        lines.append(f"| {name} | {factors.imbalance:.4f} | {remotes} | "
                     f"{m['balancedness_sglang']:.4f} | {m['colocation']:.3f} |")
    return "\n".join(lines)


def placement_ablation(runs: dict[str, RunResult]) -> dict[str, dict[str, float | None]]:
    """Per ablation variant: mean TPOT and TTFT of the EPLB and solver stacks and solver / EPLB."""
    rows = {}
    for variant, _, _ in ABLATION_VARIANTS:
        eplb, solver = (runs[ablation_label(label, variant)] for label in ABLATION)
        row: dict[str, float | None] = {}
        for name, path in (("tpot_ms", "tpot_ms.mean"), ("ttft_ms", "ttft_ms.mean")):
            a, b = metric(eplb, path), metric(solver, path)
            row |= {f"eplb_{name}": a, f"solver_{name}": b,
                    f"{name}_ratio": None if a is None or b is None or a == 0 else b / a}
        rows[variant] = row
    return rows


def ablation_table(rows: dict[str, dict[str, float | None]]) -> str:
    lines = ["| variant | EPLB TPOT mean ms | solver TPOT mean ms | solver / EPLB TPOT "
             "| EPLB TTFT mean ms | solver TTFT mean ms | solver / EPLB TTFT |", "|---|---|---|---|---|---|---|"]
    for variant, r in rows.items():
        lines.append(f"| {variant} | {r['eplb_tpot_ms']:.2f} | {r['solver_tpot_ms']:.2f} | {r['tpot_ms_ratio']:.4f} "
                     f"| {r['eplb_ttft_ms']:.1f} | {r['solver_ttft_ms']:.1f} | {r['ttft_ms_ratio']:.4f} |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, traces="azure-conv,azure-code,mooncake", requests=4000, quick_requests=800,
                         out="per --cluster: results/comparisons/full_stack (ep2), full_stack_ep8 (ep8)")
    parser.set_defaults(slo_ttft_ms=2000.0, out=None)
    parser.add_argument("--cluster", default=DEFAULT_CLUSTER, choices=sorted(CLUSTERS),
                        help=f"simulated deployment (default {DEFAULT_CLUSTER}; see the module docstring)")
    parser.add_argument("--engines", type=int, default=None, help="data-parallel engines (default 4; 2 with --quick)")
    parser.add_argument("--tpot-budget-ms", type=float, default=None,
                        help="TPOT SLO of the request layer's prefill token budget (ms; default per --cluster: "
                             + ", ".join(f"{name} {spec.tpot_budget_ms:g}" for name, spec in CLUSTERS.items()) + ")")
    parser.add_argument("--routing-stats", default="data/routing/olmoe_routing_counts.npz",
                        help="routing statistics the placements are solved and evaluated on")
    parser.add_argument("--routing-domain", default="arxiv", help="domain of a bundled routing file")
    parser.add_argument("--num-redundant", type=int, default=0,
                        help="redundant expert replicas of eplb and solver, their weights charged to those stacks' KV (SGLang's default: 0)")
    parser.add_argument("--solve-time-s", type=float, default=30.0, help="solver time limit (s)")
    parser.add_argument("--placement", help="solver placement JSON from 'moesched place' (skips solving)")


def run(args: argparse.Namespace) -> int:
    traces, n_requests, n_capacity, slo = parse_common(args)
    spec = CLUSTERS[args.cluster]
    args.engines = args.engines or (2 if args.quick else 4)
    if args.tpot_budget_ms is None:
        args.tpot_budget_ms = spec.tpot_budget_ms
    if args.engines < 1 or args.tpot_budget_ms <= 0 or args.solve_time_s <= 0:
        raise ValueError("--engines: expected >= 1; --tpot-budget-ms and --solve-time-s: expected > 0")
    out = Path(args.out or spec.out)
    replicated_kv = spec.engine.kv_capacity_tokens - args.num_redundant * redundant_expert_kv_tokens(spec.gpu_model)
    if replicated_kv < spec.engine.kv_capacity_tokens // 4:
        raise ValueError(f"--num-redundant: {args.num_redundant} replicas would leave {replicated_kv} of the "
                         f"{spec.engine.kv_capacity_tokens} KV tokens per engine; expected fewer replicas")
    placements = build_placements(args.routing_stats, args.routing_domain, spec.ep_gpus, args.num_redundant,
                                  args.solve_time_s, args.placement)
    model = anchored_model(preset_model(spec.gpu_model), placements.factors[DEFAULT_EXECUTION_MODEL]["trivial"])
    cluster = Cluster(engines=args.engines, engine=spec.engine, model=model, model_name=model.name,
                      placements=placements.cluster_factors())
    decode_only = DecodeOnlyPlacementTraffic(model, placements.factors[DEFAULT_EXECUTION_MODEL]["eplb"].remote_fraction)
    floored = ExpertStreamFloor(model, DEPLOYMENTS[spec.gpu_model].expert_stream_floor_s())
    clusters = {ablation_label(label, variant): replace(cluster, model=decode_only, model_name=decode_only.name)
                for variant, _, full in ABLATION_VARIANTS if not full for label in ABLATION}
    clusters |= {f"{label}@{STREAM_FLOOR}": replace(cluster, model=floored, model_name=floored.name)
                 for label in STREAM_FLOOR_STACKS}

    def stack_cluster(stack: Stack) -> Cluster:
        """The stack's cluster: its model variant, and less KV when its placement holds replicas."""
        on = clusters.get(stack.label, cluster)
        if args.num_redundant and not (stack.placement or "").startswith("trivial"):
            on = replace(on, engine=replace(on.engine, kv_capacity_tokens=replicated_kv))
        return on

    todo = stacks(args.tpot_budget_ms)
    all_runs: list[RunResult] = []
    per_trace: dict[str, list[RunResult]] = {}
    capacities, targets, sections, ablations = {}, [], [], {}
    with progress(len(traces) * (len(todo) + 1), args.no_progress, "full stack") as bar:
        recorded = ((trace.name, trace.load(n_requests)) for trace in traces)
        for replay in replays(recorded, todo[0], cluster, n_capacity, args.load, bar):
            name, offered, requests, workload = replay.trace, replay.offered, replay.requests, replay.workload()
            capacities[name] = offered.to_dict()
            runs: dict[str, RunResult] = {}
            for stack in todo:
                runs[stack.label] = run_stack(stack, stack_cluster(stack), requests, slo, workload)
                bar.update()
            if name in TARGET_TRACES:
                targets += trace_targets(name, runs)
            per_trace[name] = list(runs.values())
            ablations[name] = placement_ablation(runs)
            sections.append(offered.heading(name, len(requests)) + "\n\n"
                            + comparison_table(list(runs.values()), runs[BASELINE])
                            + "\n\nPlacement ablation (EPLB vs solver, same stack otherwise):\n\n"
                            + ablation_table(ablations[name]))
            all_runs += trace_runs(name, runs.values())
    ratio_bars({name: [r for r in runs if "@" not in r.label] for name, runs in per_trace.items()},
               BASELINE, out / "ratios.png")  # main stacks; the @ variants are in the tables
    markdown = "\n\n".join([
        f"# Full stack, simulated ({args.engines} engines x {spec.gpu_model}, load {args.load:g})",
        f"SLO attainment: TTFT <= {slo.ttft_ms:g} ms and TPOT <= {slo.tpot_ms:g} ms. Request-layer token "
        f"budget: TPOT SLO {args.tpot_budget_ms:g} ms.",
        f"## Placements ({placements.source}, {spec.ep_gpus} GPUs, {args.num_redundant} redundant)",
        f"Execution model: every stack runs {DEFAULT_EXECUTION_MODEL} except the '@affinity' rows (affinity) "
        "and the '@affinity-decode' rows (affinity, placement traffic on decode tokens only). "
        f"'@{STREAM_FLOOR}' rows: expert weight streaming floored at its roofline "
        f"({floored.floor_s * 1e3:.4f} ms per distinct expert; fitted {model.coefficients.expert_load_s * 1e3:.4f} ms "
        "at the trivial placement).",
        placement_table(placements), "## Targets (issue 7)", targets_table(targets), *sections,
        "![ratios](ratios.png)"]) + "\n"
    comparison = {
        "cluster": args.cluster, "ep_gpus": spec.ep_gpus, "kv_capacity_tokens": spec.engine.kv_capacity_tokens,
        "num_redundant": args.num_redundant, "kv_capacity_tokens_with_replicas": replicated_kv,
        "expert_stream_floor_s": floored.floor_s, "tpot_budget_ms": args.tpot_budget_ms,
        "capacities": capacities, "targets": [t.to_dict() for t in targets], "gpu_model": model.name,
        "engines": args.engines, "quick": args.quick, "routing_stats": placements.source,
        "placements": {name: {"imbalance": f.imbalance,
                              "remote_fraction": {execution: placements.factors[execution][name].remote_fraction
                                                  for execution in EXECUTION_MODELS},
                              "metrics": placements.metrics[name]}
                       for name, f in placements.factors[DEFAULT_EXECUTION_MODEL].items()},
        "placement_ablation": ablations,
        "solve_seconds": placements.solve_seconds,
    }
    publish(out, all_runs, comparison, markdown)
    return 0


def main(argv: list[str] | None = None) -> int:
    return script_main("experiments.comparisons.full_stack", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
