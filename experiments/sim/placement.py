"""The MoE factors a simulated engine runs with, from an expert placement and routing statistics.

Per MoE layer, :func:`expert_sched.metrics.placement_step_factors` gives the slowest GPU's expert
load relative to the mean (imbalance) and the share of token->expert copies that leave the GPU the
token is on (remote fraction), under an expert-parallel execution model
(:data:`expert_sched.metrics.EXECUTION_MODELS`): ``deepep-low-latency`` (SGLang with DP attention
and DeepEP: a token's GPU is independent of its experts) or ``affinity`` (ExFlow-style: a token
continues on the GPU of its previous layer's top-1 expert, so co-located consecutive-layer experts
save traffic). The step model takes one :class:`~perf_model.batch.MoeFactors` per engine: the mean
over layers of both (the MoE part of a step is a sum over layers, each waiting for its most loaded
GPU).
"""

from __future__ import annotations

from perf_model.batch import MoeFactors

from expert_sched.metrics import DEFAULT_EXECUTION_MODEL, placement_step_factors
from expert_sched.placement import Placement, read_placement
from expert_sched.stats import RoutingStats, load_stats


def moe_factors(placement: Placement, stats: RoutingStats,
                execution: str = DEFAULT_EXECUTION_MODEL) -> MoeFactors:
    """Mean over MoE layers of ``placement``'s step factors under ``stats`` and ``execution``."""
    imbalance, remote = placement_step_factors(placement, stats, execution)
    return MoeFactors(imbalance=float(imbalance.mean()), remote_fraction=float(remote.mean()))


def placement_moe_factors(placement_path: str, stats_path: str, num_gpus: int, num_nodes: int = 1,
                          domain: str | None = None, execution: str = DEFAULT_EXECUTION_MODEL) -> MoeFactors:
    """MoE factors of the placement file ``placement_path`` under the routing of ``stats_path``.

    Args:
        placement_path: SGLang placement JSON (``physical_to_logical_map`` [L, P]).
        stats_path: routing statistics (any format :func:`expert_sched.stats.load_stats` reads).
        num_gpus, num_nodes: the expert-parallel layout the placement is for.
        domain: which domain of a bundled OLMoE/Mixtral routing file to use.
        execution: expert-parallel execution model of the remote fraction
            (``deepep-low-latency`` or ``affinity``; the latter needs transitions in the stats).

    Raises ValueError when the files disagree (layer count) or are malformed.
    """
    stats = load_stats(stats_path, domain=domain)
    placement = read_placement(placement_path, stats.num_experts, num_gpus, num_nodes)
    if placement.num_layers != stats.num_layers:
        raise ValueError(f"{placement_path}: placement has {placement.num_layers} layers but "
                         f"{stats_path} has {stats.num_layers}")
    return moe_factors(placement, stats, execution)
