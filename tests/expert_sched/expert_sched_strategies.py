"""Small random placements and routing for the expert_sched tests."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from expert_sched.placement import Placement


@st.composite
def layouts(draw, max_layers: int = 3):
    """(num_layers, num_experts, num_gpus, num_nodes, num_redundant) with (E + R) % G == 0."""
    num_nodes = draw(st.sampled_from([1, 2]))
    num_gpus = num_nodes * draw(st.integers(1, 3))
    slots = draw(st.integers(1, 4))
    num_experts = draw(st.integers(max(1, num_gpus * slots - num_gpus * 2), num_gpus * slots))
    return draw(st.integers(2, max_layers)), num_experts, num_gpus, num_nodes, num_gpus * slots - num_experts


@st.composite
def placements(draw):
    """A random valid placement (every expert at least once per layer)."""
    num_layers, num_experts, num_gpus, num_nodes, num_redundant = draw(layouts())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rows = []
    for _ in range(num_layers):
        extra = rng.integers(num_experts, size=num_redundant)
        rows.append(rng.permutation(np.concatenate([np.arange(num_experts), extra])))
    return Placement(np.stack(rows), num_experts=num_experts, num_gpus=num_gpus, num_nodes=num_nodes)
