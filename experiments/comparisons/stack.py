"""One simulated serving stack (request policy + dispatcher + expert placement + engine limits),
and running it on a workload with the project's real policy objects.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from engine_dispatch.dispatcher import Dispatcher
from engine_dispatch.factory import create_dispatcher
from experiments.comparisons.dispatch_metrics import BalanceSampler, prefix_hit_rate, requests_per_engine
from experiments.metrics.runs import RunResult
from experiments.metrics.summary import Slo
from experiments.sim.cluster import simulate
from experiments.sim.config import ClusterConfig, EngineConfig
from experiments.sim.results import run_result
from experiments.workloads.types import BLOCK_TOKENS, TraceRequest
from perf_model.batch import MoeFactors, StepTimeModel
from request_sched.policies import create_queue
from request_sched.token_budget import SloTokenBudget


@dataclass(frozen=True)
class Stack:
    """What one configuration runs on every engine of the cluster.

    Attributes:
        label: unique name in tables and run JSON.
        policy: request policy name (``request_sched.policies.create_queue``).
        dispatch: dispatcher name (``engine_dispatch.factory.create_dispatcher``).
        dispatch_options: keyword options of the dispatcher, merged over the defaults of
            :func:`build_dispatcher` (e.g. ``config``, a ``ScoredConfig``); not recorded in the run
            config (they need not be JSON), so a caller adds what identifies them.
        policy_options: keyword options of the policy (sjf-aging gets the cluster's step model
            as ``step_model`` unless given here).
        placement: name of the expert placement whose factors the engines run with (a key of
            :attr:`Cluster.placements`), or None (no expert-parallel terms).
        admit_whole_prompt: SGLang admission (True) or vLLM V1's first-chunk admission (False).
        tpot_budget_ms: SLO-aware prefill token budget (``request_sched.token_budget``) or None.
        prefill_order: ``"admission"`` (vLLM V1 step forming) or ``"policy"`` (SGLang 0.5.23:
            prefill batches taken from the waiting queue in policy order), see
            :class:`~experiments.sim.config.EngineConfig`.
        mixed_chunk: with ``"policy"`` order, decodes join prefill steps (SGLang
            ``--enable-mixed-chunk``); False: they wait for each prefill step (stock SGLang).
        decode_reservation: with ``"policy"`` order, SGLang's admission headroom for future
            decode tokens (``max_new_tokens`` x ``new_token_ratio``,
            :mod:`experiments.sim.decode_reservation`).
        learnt_headroom: with ``decode_reservation``, that headroom clipped at a quantile of the
            engine's recent outputs (:mod:`request_sched.headroom`, the plugin's
            ``[request.headroom]``) instead of SGLang's 4,096 tokens.
    """

    label: str
    policy: str = "fcfs"
    dispatch: str = "round-robin"
    dispatch_options: Mapping[str, Any] = field(default_factory=dict)
    policy_options: Mapping[str, Any] = field(default_factory=dict)
    placement: str | None = None
    admit_whole_prompt: bool = True
    tpot_budget_ms: float | None = None
    prefill_order: str = "admission"
    mixed_chunk: bool = False
    decode_reservation: bool = False
    learnt_headroom: bool = False


@dataclass(frozen=True)
class Cluster:
    """The hardware every stack runs on.

    Attributes:
        engines: data-parallel engines.
        engine: per-engine limits (admission mode and budget are set per stack).
        model: step-latency model of one engine; ``model_name`` labels it in records.
        placements: placement name -> the MoE factors it gives every engine.
        load_refresh_s: staleness of the load reports dispatchers see (router polling).
    """

    engines: int
    engine: EngineConfig
    model: StepTimeModel
    model_name: str
    placements: Mapping[str, MoeFactors] = field(default_factory=dict)
    load_refresh_s: float = 0.5


def _queue_factory(stack: Stack, model: StepTimeModel):
    options = dict(stack.policy_options)
    if stack.policy == "sjf-aging":
        options.setdefault("step_model", model)
    return lambda: create_queue(stack.policy, **options)


def build_dispatcher(stack: Stack, cluster: Cluster, seed: int = 0) -> Dispatcher:
    """A fresh dispatcher for one run: scored ones get the cluster's step model and 512-token
    blocks, power-of-two gets ``seed``; ``stack.dispatch_options`` override these.

    Raises ValueError for an unknown dispatcher or option.
    """
    defaults: dict[str, Any] = {}
    if stack.dispatch == "scored":
        defaults = {"step_model": cluster.model, "block_tokens": BLOCK_TOKENS}
    elif stack.dispatch == "power-of-two":
        defaults = {"seed": seed}
    return create_dispatcher(stack.dispatch, cluster.engines, **{**defaults, **stack.dispatch_options})


def run_stack(stack: Stack, cluster: Cluster, requests: list[TraceRequest], slo: Slo,
              workload: Mapping[str, Any], seed: int = 0, dispatch_metrics: bool = False) -> RunResult:
    """Simulate ``stack`` on ``cluster`` over ``requests``; the run carries records and summary.

    ``workload`` describes the requests (trace, rate, load) and is stored in the run's config.
    With ``dispatch_metrics`` the summary gains ``"dispatch"``: prefix hit rate, load balance
    (:class:`~experiments.comparisons.dispatch_metrics.BalanceSampler`) and requests per engine.
    """
    engine = cluster.engine
    budget = None
    if stack.tpot_budget_ms is not None:
        budget = SloTokenBudget(cluster.model, stack.tpot_budget_ms / 1e3, max_budget=engine.max_batched_tokens,
                                min_budget=min(256, engine.max_batched_tokens))
    engine = replace(engine, admit_whole_prompt=stack.admit_whole_prompt, budget=budget,
                     prefill_order=stack.prefill_order, mixed_chunk=stack.mixed_chunk,
                     decode_reservation=stack.decode_reservation,
                     learnt_headroom=stack.learnt_headroom)
    moe = None
    if stack.placement is not None:
        try:
            moe = cluster.placements[stack.placement]
        except KeyError:
            raise ValueError(f"stack {stack.label}: unknown placement {stack.placement!r}; expected one of "
                             f"{', '.join(cluster.placements)}") from None
    config = ClusterConfig(engines=cluster.engines, engine=engine, queue_factory=_queue_factory(stack, cluster.model),
                           load_refresh_s=cluster.load_refresh_s, moe=moe)
    sampler = BalanceSampler() if dispatch_metrics else None
    started = time.process_time()
    result = simulate(requests, config, cluster.model, build_dispatcher(stack, cluster, seed), sampler)
    cpu_s = time.process_time() - started
    record_config = {
        "simulator": True, "gpu_model": cluster.model_name, "engines": cluster.engines,
        "policy": stack.policy, "policy_options": {k: v for k, v in stack.policy_options.items()},
        "dispatch": stack.dispatch, "placement": stack.placement,
        "moe": None if moe is None else {"imbalance": moe.imbalance, "remote_fraction": moe.remote_fraction},
        "admit_whole_prompt": stack.admit_whole_prompt,
        "prefill_order": stack.prefill_order, "mixed_chunk": stack.mixed_chunk,
        "decode_reservation": stack.decode_reservation, "learnt_headroom": stack.learnt_headroom,
        "tpot_budget_ms": stack.tpot_budget_ms,
        "max_running": engine.max_running, "max_batched_tokens": engine.max_batched_tokens,
        "kv_capacity_tokens": engine.kv_capacity_tokens, "prefix_caching": engine.prefix_caching,
        "load_refresh_s": cluster.load_refresh_s, "workload": dict(workload), "simulation_cpu_s": cpu_s,
    }
    run = run_result(result, stack.label, record_config, slo)
    if sampler is not None:
        run.summary["dispatch"] = {"prefix_hit_rate": prefix_hit_rate(result), **sampler.summary(),
                                   "requests_per_engine": requests_per_engine(result)}
    return run
