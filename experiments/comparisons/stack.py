"""One simulated serving stack (request policy + dispatcher + expert placement + engine limits),
and running it on a workload with the project's real policy objects.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine_dispatch.factory import create_dispatcher
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
        policy_options: keyword options of the policy (sjf-aging gets the cluster's step model
            as ``step_model`` unless given here).
        placement: name of the expert placement whose factors the engines run with (a key of
            :attr:`Cluster.placements`), or None (no expert-parallel terms).
        admit_whole_prompt: SGLang admission (True) or vLLM V1's first-chunk admission (False).
        tpot_budget_ms: SLO-aware prefill token budget (``request_sched.token_budget``) or None.
    """

    label: str
    policy: str = "fcfs"
    dispatch: str = "round-robin"
    policy_options: Mapping[str, Any] = field(default_factory=dict)
    placement: str | None = None
    admit_whole_prompt: bool = True
    tpot_budget_ms: float | None = None


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


def _dispatcher(stack: Stack, cluster: Cluster, seed: int):
    options: dict[str, Any] = {}
    if stack.dispatch == "scored":
        options = {"step_model": cluster.model, "block_tokens": BLOCK_TOKENS}
    elif stack.dispatch == "power-of-two":
        options = {"seed": seed}
    return create_dispatcher(stack.dispatch, cluster.engines, **options)


def run_stack(stack: Stack, cluster: Cluster, requests: list[TraceRequest], slo: Slo,
              workload: Mapping[str, Any], seed: int = 0) -> RunResult:
    """Simulate ``stack`` on ``cluster`` over ``requests``; the run carries records and summary.

    ``workload`` describes the requests (trace, rate, load) and is stored in the run's config.
    """
    engine = cluster.engine
    budget = None
    if stack.tpot_budget_ms is not None:
        budget = SloTokenBudget(cluster.model, stack.tpot_budget_ms / 1e3, max_budget=engine.max_batched_tokens,
                                min_budget=min(256, engine.max_batched_tokens))
    engine = EngineConfig(max_running=engine.max_running, max_batched_tokens=engine.max_batched_tokens,
                          kv_capacity_tokens=engine.kv_capacity_tokens, prefix_caching=engine.prefix_caching,
                          admit_whole_prompt=stack.admit_whole_prompt,
                          rematch_waiting_max=engine.rematch_waiting_max, budget=budget)
    moe = None
    if stack.placement is not None:
        try:
            moe = cluster.placements[stack.placement]
        except KeyError:
            raise ValueError(f"stack {stack.label}: unknown placement {stack.placement!r}; expected one of "
                             f"{', '.join(cluster.placements)}") from None
    config = ClusterConfig(engines=cluster.engines, engine=engine, queue_factory=_queue_factory(stack, cluster.model),
                           load_refresh_s=cluster.load_refresh_s, moe=moe)
    started = time.process_time()
    result = simulate(requests, config, cluster.model, _dispatcher(stack, cluster, seed))
    cpu_s = time.process_time() - started
    record_config = {
        "simulator": True, "gpu_model": cluster.model_name, "engines": cluster.engines,
        "policy": stack.policy, "policy_options": {k: v for k, v in stack.policy_options.items()},
        "dispatch": stack.dispatch, "placement": stack.placement,
        "moe": None if moe is None else {"imbalance": moe.imbalance, "remote_fraction": moe.remote_fraction},
        "admit_whole_prompt": stack.admit_whole_prompt, "tpot_budget_ms": stack.tpot_budget_ms,
        "max_running": engine.max_running, "max_batched_tokens": engine.max_batched_tokens,
        "kv_capacity_tokens": engine.kv_capacity_tokens, "prefix_caching": engine.prefix_caching,
        "load_refresh_s": cluster.load_refresh_s, "workload": dict(workload), "simulation_cpu_s": cpu_s,
    }
    return run_result(result, stack.label, record_config, slo)
