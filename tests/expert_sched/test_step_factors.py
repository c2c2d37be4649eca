"""placement_step_factors under both execution models against a token-by-token count."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from expert_sched.metrics import EXECUTION_MODELS, placement_step_factors
from expert_sched.placement import Placement
from expert_sched.stats import RoutingStats, stats_from_topk_ids

from expert_sched_strategies import placements


def _tokens(placement, seed, k, num_tokens=12):
    rng = np.random.default_rng(seed)
    k = min(k, placement.num_experts)
    return np.stack([np.stack([rng.permutation(placement.num_experts)[:k] for _ in range(num_tokens)])
                     for _ in range(placement.num_layers)])


def _replica_gpus(placement, layer, expert):
    """GPU of every replica of ``expert`` (a GPU with two replicas appears twice)."""
    return [slot // placement.slots_per_gpu for slot in range(placement.num_slots)
            if placement.phy2log[layer, slot] == expert]


def _brute_force_remote(placement, ids, execution):
    """Per layer, the expected share of (token, expert) copies that leave the token's GPU.

    Layer 0 (and every layer under low latency): the token sits on a home GPU drawn uniformly,
    a copy is local iff that GPU holds the expert. Affinity, layer l >= 1: the token sits on the
    GPU of one replica of its layer l-1 top-1 expert (each replica equally likely) and its copies
    are local iff that GPU holds its layer-l top-1 expert.
    """
    num_layers, num_tokens, k = ids.shape
    remote = np.zeros(num_layers)
    for layer in range(num_layers):
        for t in range(num_tokens):
            if execution == "affinity" and layer > 0:
                before = _replica_gpus(placement, layer - 1, ids[layer - 1, t, 0])
                after = set(_replica_gpus(placement, layer, ids[layer, t, 0]))
                remote[layer] += k * sum(1 / len(before) for g in before if g not in after)
            else:
                for expert in ids[layer, t]:
                    holders = set(_replica_gpus(placement, layer, expert))
                    remote[layer] += sum(1 / placement.num_gpus for g in range(placement.num_gpus) if g not in holders)
        remote[layer] /= num_tokens * k
    return remote


@settings(max_examples=40, deadline=None)
@given(placements(), st.integers(0, 1000), st.sampled_from([1, 2]), st.sampled_from(EXECUTION_MODELS))
def test_remote_fraction_brute_force(placement, seed, k, execution):
    ids = _tokens(placement, seed, k)
    stats = stats_from_topk_ids(ids, placement.num_experts)
    imbalance, remote = placement_step_factors(placement, stats, execution)
    np.testing.assert_allclose(remote, _brute_force_remote(placement, ids, execution), atol=1e-12)
    low_latency_imbalance, _ = placement_step_factors(placement, stats)
    np.testing.assert_array_equal(imbalance, low_latency_imbalance)  # execution changes traffic only


def test_chained_placement_keeps_every_transition_local():
    """Expert e at every layer on GPU e // 2 and tokens keep their expert: affinity has no
    cross-GPU traffic after layer 0, while low latency sends half the copies away (2 GPUs)."""
    placement = Placement(np.tile(np.arange(4), (3, 1)), num_experts=4, num_gpus=2)
    ids = np.tile(np.arange(4).repeat(5)[None, :, None], (3, 1, 1))  # [3 layers, 20 tokens, top-1]
    stats = stats_from_topk_ids(ids, 4)
    _, low_latency = placement_step_factors(placement, stats, "deepep-low-latency")
    _, affinity = placement_step_factors(placement, stats, "affinity")
    np.testing.assert_allclose(low_latency, [0.5, 0.5, 0.5])
    np.testing.assert_allclose(affinity, [0.5, 0.0, 0.0])


def test_layer_pair_without_transitions_keeps_the_low_latency_share():
    placement = Placement(np.tile(np.arange(4), (2, 1)), num_experts=4, num_gpus=2)
    stats = RoutingStats(load=np.ones((2, 4)), transitions=np.zeros((1, 4, 4)))
    _, remote = placement_step_factors(placement, stats, "affinity")
    np.testing.assert_allclose(remote, [0.5, 0.5])


def test_bad_execution_model_and_missing_transitions_raise():
    placement = Placement(np.tile(np.arange(4), (2, 1)), num_experts=4, num_gpus=2)
    stats = RoutingStats(load=np.ones((2, 4)), source="counts.npz")
    with pytest.raises(ValueError, match="expected one of deepep-low-latency, affinity"):
        placement_step_factors(placement, stats, "normal")
    with pytest.raises(ValueError, match="counts.npz.*transitions"):
        placement_step_factors(placement, stats, "affinity")
