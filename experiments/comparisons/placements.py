"""The expert placements the full-stack comparison runs with, and the MoE factors they give.

Three placements of the same routing statistics on ``num_gpus`` expert-parallel GPUs:

- ``trivial``: expert e on GPU e // (E/G), no replicas (vLLM without EPLB);
- ``eplb``: DeepSeek's EPLB with ``num_redundant`` replicas (SGLang ``--enable-eplb``),
  ``expert_sched.eplb``;
- ``solver``: ``moesched place`` (``expert_sched.solver``): EPLB's balance or better per layer,
  plus co-location of the experts consecutive layers chain.

Each gives :class:`~perf_model.batch.MoeFactors` = mean over layers of
``expert_sched.metrics.placement_step_factors`` (max/mean GPU expert load; share of token->expert
copies that leave their home GPU). The step model scales its MoE terms by
``imbalance / reference_imbalance`` and its all-to-all by the remote share; co-location itself is
not a term of the step model, so ``solver`` can only differ from ``eplb`` through imbalance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from expert_sched.metrics import evaluate, placement_step_factors
from expert_sched.placement import Placement, read_placement
from expert_sched.solver import SolverOptions, solve_placement
from expert_sched.stats import RoutingStats, load_stats
from perf_model.batch import MoeFactors
from perf_model.structural import StructuralStepModel


@dataclass(frozen=True)
class PlacementSet:
    """Placements by name with their factors and ``expert_sched.metrics.evaluate`` metrics."""

    placements: dict[str, Placement]
    factors: dict[str, MoeFactors]
    metrics: dict[str, dict[str, object]]
    source: str
    solve_seconds: float | None


def trivial_placement(num_layers: int, num_experts: int, num_gpus: int) -> Placement:
    """Expert e on GPU e // (E/G) at every layer, no replicas."""
    return Placement(np.tile(np.arange(num_experts), (num_layers, 1)), num_experts, num_gpus)


def moe_factors(placement: Placement, stats: RoutingStats) -> MoeFactors:
    imbalance, remote = placement_step_factors(placement, stats)
    return MoeFactors(imbalance=float(imbalance.mean()), remote_fraction=float(remote.mean()))


def build_placements(stats_path: str, domain: str | None, num_gpus: int, num_redundant: int,
                     time_limit_s: float, solved_path: str | None = None, seed: int = 0) -> PlacementSet:
    """Trivial, EPLB and solver placements of ``stats_path`` on ``num_gpus`` GPUs.

    ``solved_path``: a placement JSON already written by ``moesched place`` for the same stats
    and layout (then nothing is solved); otherwise the solver runs for ``time_limit_s`` seconds.
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
                        factors={name: moe_factors(p, stats) for name, p in placements.items()},
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
