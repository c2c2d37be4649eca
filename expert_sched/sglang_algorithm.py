"""The solver behind SGLang's EPLB algorithm interface (numpy in, numpy out; no torch here).

SGLang 0.5.23 calls ``rebalance_experts(tokens_per_expert, num_physical_experts,
num_local_physical_experts, num_groups, num_nodes, algorithm)`` (``srt/eplb/eplb_algorithms``)
and expects ``(physical_to_logical_map [L, P], logical_to_physical_map [L, E, X] padded with -1,
logical_count [L, E])``. :func:`rebalance` has that shape; ``sglang_patches`` converts tensors.

SGLang's ``tokens_per_expert`` holds per-layer loads only, so the co-location objective needs the
transitions from somewhere else: pass ``transitions`` [L-1, E, E] (for example from a per-token
recorder dump read with ``expert_sched.stats.load_stats``). Without it the result is EPLB's.
"""

from __future__ import annotations

import numpy as np

from .eplb import eplb_placement
from .placement import Placement
from .solver import SolverOptions, solve_placement
from .stats import RoutingStats


def logical_maps(placement: Placement) -> tuple[np.ndarray, np.ndarray]:
    """``logical_to_physical`` [L, E, X] (slots of each expert in ascending order, padded with -1)
    and ``logical_count`` [L, E] of a placement."""
    counts = placement.counts()
    width = int(counts.max())
    log2phy = np.full((placement.num_layers, placement.num_experts, width), -1, dtype=np.int64)
    for layer, row in enumerate(placement.phy2log):
        filled = np.zeros(placement.num_experts, dtype=np.int64)
        for slot, expert in enumerate(row):
            log2phy[layer, expert, filled[expert]] = slot
            filled[expert] += 1
    return log2phy, counts


def rebalance(tokens_per_expert: np.ndarray, num_physical: int, num_local_physical: int,
              num_groups: int | None, num_nodes: int, transitions: np.ndarray | None = None,
              options: SolverOptions | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Co-location-aware placement with SGLang's algorithm signature.

    tokens_per_expert: [steps, L, E] (or [L, E]) token counts; num_physical = E + R;
    num_local_physical = S slots per GPU; transitions: optional [L-1, E, E] top-1 transitions.
    Returns ``(phy2log [L, P], log2phy [L, E, X] padded -1, logcnt [L, E])``.
    """
    counts = np.asarray(tokens_per_expert, dtype=np.float64)
    load = counts.sum(0) if counts.ndim == 3 else counts
    num_experts = load.shape[1]
    if num_physical % num_local_physical:
        raise ValueError(f"num_physical {num_physical} is not a multiple of num_local_physical {num_local_physical}")
    num_gpus = num_physical // num_local_physical
    if transitions is None or load.shape[0] < 2:
        placement = eplb_placement(load, num_gpus, num_physical - num_experts, num_nodes, num_groups)
    else:
        stats = RoutingStats(load=load, transitions=np.asarray(transitions, dtype=np.float64), source="sglang")
        placement = solve_placement(stats, num_gpus, num_physical - num_experts, num_nodes, num_groups,
                                    options).placement
    log2phy, logcnt = logical_maps(placement)
    return placement.phy2log, log2phy, logcnt
