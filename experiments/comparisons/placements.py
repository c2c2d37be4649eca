"""The expert placements the full-stack comparison runs with, and the MoE factors they give.

Three placements of the same routing statistics on ``num_gpus`` expert-parallel GPUs:

- ``trivial``: expert e on GPU e // (E/G), no replicas (vLLM without EPLB);
- ``eplb``: DeepSeek's EPLB with ``num_redundant`` replicas (SGLang ``--enable-eplb``),
  ``expert_sched.eplb``;
- ``solver``: ``moesched place`` (``expert_sched.solver``): EPLB's balance or better per layer,
  plus co-location of the experts consecutive layers chain.

Each gives one :class:`~perf_model.batch.MoeFactors` per expert-parallel execution model
(:data:`expert_sched.metrics.EXECUTION_MODELS`; :func:`experiments.sim.placement.moe_factors`:
mean over layers of max/mean GPU expert load and of the share of token->expert copies that leave
the token's GPU). The step model scales its MoE terms by ``imbalance / reference_imbalance`` and
its all-to-all by the remote share. Under ``deepep-low-latency`` (what SGLang runs) the remote
share depends only on replica counts, so ``solver`` can differ from ``eplb`` only through
imbalance; under ``affinity`` (ExFlow-style execution) co-location lowers the remote share.

:class:`DecodeOnlyPlacementTraffic` is the ablation's sensitivity check: the step model's
all-to-all term charges every token ``k * remote_fraction`` copies (DeepEP low-latency counting,
what SGLang's decode kernels send), but SGLang's prefill runs DeepEP normal mode, one copy per
distinct destination GPU, so at EP2 with top-8 a prefill token sends one copy to the other GPU
unless all 8 of its experts sit on its own GPU, whatever the placement. The wrapper keeps prefill
tokens at a fixed remote share, so a placement changes only decode tokens' traffic.

:class:`ExpertStreamFloor` is the other sensitivity check, for wide expert parallelism: the
anchored model shrinks the fitted per-expert weight-streaming cost by ``imbalance /
reference_imbalance``, which at EP8 (trivial imbalance 1.66 on OLMoE statistics) takes it below the
time HBM needs to stream an expert's weights at all. The wrapper keeps that cost at or above its
roofline floor, so a placement can only remove the fitted cost above it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from expert_sched.metrics import DEFAULT_EXECUTION_MODEL, EXECUTION_MODELS, evaluate
from expert_sched.placement import Placement, read_placement
from expert_sched.solver import SolverOptions, solve_placement
from expert_sched.stats import load_stats
from experiments.sim.placement import moe_factors
from perf_model.batch import BatchShape, MoeFactors
from perf_model.experts import distinct_experts
from perf_model.structural import StructuralStepModel


def factor_key(name: str, execution: str = DEFAULT_EXECUTION_MODEL) -> str:
    """Cluster placement key of placement ``name`` under ``execution``: ``name`` for the default
    model (``deepep-low-latency``), else ``name@execution`` (e.g. ``solver@affinity``)."""
    return name if execution == DEFAULT_EXECUTION_MODEL else f"{name}@{execution}"


@dataclass(frozen=True)
class PlacementSet:
    """Placements by name with their factors and ``expert_sched.metrics.evaluate`` metrics.

    ``factors[execution][name]``: the MoE factors of placement ``name`` under execution model
    ``execution`` (every model of :data:`~expert_sched.metrics.EXECUTION_MODELS`).
    """

    placements: dict[str, Placement]
    factors: dict[str, dict[str, MoeFactors]]
    metrics: dict[str, dict[str, object]]
    source: str
    solve_seconds: float | None

    def cluster_factors(self) -> dict[str, MoeFactors]:
        """Every (placement, execution model) pair by :func:`factor_key`, for a comparison cluster."""
        return {factor_key(name, execution): f
                for execution, by_name in self.factors.items() for name, f in by_name.items()}


def trivial_placement(num_layers: int, num_experts: int, num_gpus: int) -> Placement:
    """Expert e on GPU e // (E/G) at every layer, no replicas."""
    return Placement(np.tile(np.arange(num_experts), (num_layers, 1)), num_experts, num_gpus)


def build_placements(stats_path: str, domain: str | None, num_gpus: int, num_redundant: int,
                     time_limit_s: float, solved_path: str | None = None, seed: int = 0) -> PlacementSet:
    """Trivial, EPLB and solver placements of ``stats_path`` on ``num_gpus`` GPUs.

    ``solved_path``: a placement JSON already written by ``moesched place`` for the same stats
    and layout (then nothing is solved); otherwise the solver runs for ``time_limit_s`` seconds.
    The ``affinity`` factors need the stats' top-1 transitions (ValueError naming the file if absent).
    """
    stats = load_stats(stats_path, domain)
    solve_seconds = None
    if solved_path is not None:
        from expert_sched.eplb import eplb_placement

        solver = read_placement(solved_path, stats.num_experts, num_gpus)
        if solver.num_layers != stats.num_layers:
            raise ValueError(f"{solved_path}: {solver.num_layers} layers, but {stats_path} has {stats.num_layers}")
        eplb = eplb_placement(stats.load, num_gpus, num_redundant)
        if eplb.phy2log.shape != solver.phy2log.shape:
            raise ValueError(f"{solved_path}: shape {list(solver.phy2log.shape)}, expected "
                             f"{list(eplb.phy2log.shape)} ({num_redundant} redundant replicas)")
    else:
        result = solve_placement(stats, num_gpus, num_redundant,
                                 options=SolverOptions(time_limit=time_limit_s, seed=seed))
        solver, eplb, solve_seconds = result.placement, result.eplb, result.solve_seconds
    placements = {"trivial": trivial_placement(stats.num_layers, stats.num_experts, num_gpus),
                  "eplb": eplb, "solver": solver}
    return PlacementSet(placements=placements,
                        factors={execution: {name: moe_factors(p, stats, execution) for name, p in placements.items()}
                                 for execution in EXECUTION_MODELS},
                        metrics={name: evaluate(p, stats) for name, p in placements.items()},
                        source=f"{Path(stats_path).name}" + (f" ({domain})" if domain else ""),
                        solve_seconds=solve_seconds)


def anchored_model(model: StructuralStepModel, reference: MoeFactors) -> StructuralStepModel:
    """``model`` with its MoE terms anchored at ``reference.imbalance``.

    A preset fitted to measurements of an engine running placement P should reproduce those
    measurements when run with P's factors: its ``reference_imbalance`` is set to P's imbalance.
    """
    structure = replace(model.structure, reference_imbalance=reference.imbalance)
    return StructuralStepModel(structure, model.coefficients, name=f"{model.name}@imbalance={reference.imbalance:.3f}")


@dataclass(frozen=True)
class DecodeOnlyPlacementTraffic:
    """A step model in which the placement's remote fraction reaches decode tokens only.

    ``step_seconds(batch, moe) = model.step_seconds(batch, moe) + all_to_all_s * k * prefill_tokens
    * (prefill_remote_fraction - moe.remote_fraction)``: prefill tokens pay the all-to-all of
    ``prefill_remote_fraction`` (e.g. the low-latency share, the same for EPLB and the solver)
    whatever the placement; decode tokens pay the placement's own share.
    """

    model: StructuralStepModel
    prefill_remote_fraction: float

    @property
    def name(self) -> str:
        return f"{self.model.name}+decode-only-placement-traffic"

    def step_seconds(self, batch: BatchShape, moe: MoeFactors | None = None) -> float:
        seconds = self.model.step_seconds(batch, moe)
        if moe is None or not self.model.structure.num_experts:
            return seconds
        return seconds + (self.model.coefficients.all_to_all_s * self.model.structure.top_k * batch.prefill_tokens
                          * (self.prefill_remote_fraction - moe.remote_fraction))


@dataclass(frozen=True)
class ExpertStreamFloor:
    """A step model whose expert weight streaming never drops below its roofline floor.

    ``step_seconds(batch, moe) = model.step_seconds(batch, moe) + D(T) * max(0, floor_s -
    expert_load_s * imbalance / reference_imbalance)`` with ``D(T)`` the distinct experts a step of
    ``T`` tokens touches: the imbalance-scaled streaming cost per distinct expert is raised to
    ``floor_s`` (``perf_model.presets.Deployment.expert_stream_floor_s``) when a placement would
    take it lower. Compute and all-to-all terms are unchanged.
    """

    model: StructuralStepModel
    floor_s: float

    @property
    def name(self) -> str:
        return f"{self.model.name}+expert-stream-floor"

    def step_seconds(self, batch: BatchShape, moe: MoeFactors | None = None) -> float:
        seconds = self.model.step_seconds(batch, moe)
        st = self.model.structure
        if moe is None or not st.num_experts:
            return seconds
        scaled = self.model.coefficients.expert_load_s * moe.imbalance / st.reference_imbalance
        return seconds + distinct_experts(batch.tokens, st.num_experts, st.top_k) * max(0.0, self.floor_s - scaled)
