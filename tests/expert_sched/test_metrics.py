"""Metrics against brute-force token-by-token counts on small random cases."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from expert_sched.metrics import (balancedness_sglang, balancedness_vllm, colocation, gpu_loads,
                                  low_latency_traffic, normal_mode_traffic, pair_colocation_of_hosts,
                                  placement_step_factors)
from expert_sched.stats import stats_from_topk_ids

from expert_sched_strategies import placements


def _tokens(placement, seed, num_tokens=12):
    rng = np.random.default_rng(seed)
    k = min(2, placement.num_experts)
    return np.stack([np.stack([rng.permutation(placement.num_experts)[:k] for _ in range(num_tokens)])
                     for _ in range(placement.num_layers)])


def _replica_gpus(placement, layer, expert):
    return [slot // placement.slots_per_gpu for slot in range(placement.num_slots)
            if placement.phy2log[layer, slot] == expert]


@settings(max_examples=40, deadline=None)
@given(placements(), st.integers(0, 1000))
def test_loads_and_balancedness_brute_force(placement, seed):
    stats = stats_from_topk_ids(_tokens(placement, seed), placement.num_experts)
    loads = np.zeros((placement.num_layers, placement.num_gpus))
    for layer in range(placement.num_layers):
        for token in stats.token_topk[layer]:
            for expert in token:  # each replica takes an equal share
                gpus = _replica_gpus(placement, layer, expert)
                for g in gpus:
                    loads[layer, g] += 1 / len(gpus)
    np.testing.assert_allclose(gpu_loads(placement, stats.load), loads)
    expected = np.mean([(row.mean() + 1e-5) / (row.max() + 1e-5) for row in loads])
    assert abs(balancedness_sglang(loads) - expected) < 1e-12
    assert abs(balancedness_vllm(loads) - loads.mean(1).sum() / loads.max(1).sum()) < 1e-12


@settings(max_examples=40, deadline=None)
@given(placements(), st.integers(0, 1000))
def test_colocation_brute_force(placement, seed):
    ids = _tokens(placement, seed)
    stats = stats_from_topk_ids(ids, placement.num_experts)
    stay = 0.0
    for layer in range(placement.num_layers - 1):
        for t in range(ids.shape[1]):
            a, b = ids[layer, t, 0], ids[layer + 1, t, 0]
            gpus_a = _replica_gpus(placement, layer, a)
            gpus_b = set(_replica_gpus(placement, layer + 1, b))
            stay += sum(1 / len(gpus_a) for g in gpus_a if g in gpus_b)
    total = (placement.num_layers - 1) * ids.shape[1]
    assert abs(colocation(placement, stats.transitions) - stay / total) < 1e-9


@settings(max_examples=40, deadline=None)
@given(placements(), st.integers(0, 1000))
def test_pair_colocation_brute_force(placement, seed):
    ids = _tokens(placement, seed)
    stats = stats_from_topk_ids(ids, placement.num_experts)
    shared = pairs = 0.0
    for layer in range(placement.num_layers):
        for token in ids[layer]:
            for a in token:
                for b in token:
                    if a == b:
                        continue
                    gpus_a, gpus_b = _replica_gpus(placement, layer, a), _replica_gpus(placement, layer, b)
                    pairs += 1  # one replica of each, uniformly and independently: same GPU?
                    shared += sum(ga == gb for ga in gpus_a for gb in gpus_b) / (len(gpus_a) * len(gpus_b))
    got = pair_colocation_of_hosts(placement.hosts(), stats.coactivation)
    assert abs(got - (shared / pairs if pairs else 0.0)) < 1e-9


def _dest(placement, layer, home, expert):
    gpus = _replica_gpus(placement, layer, expert)
    distinct = sorted(set(gpus))
    if home in distinct:
        return home
    node = home // placement.gpus_per_node
    same_node = [g for g in distinct if g // placement.gpus_per_node == node]
    return same_node[0] if same_node else distinct[home % len(distinct)]


@settings(max_examples=40, deadline=None)
@given(placements(), st.integers(0, 1000))
def test_traffic_brute_force(placement, seed):
    ids = _tokens(placement, seed)
    stats = stats_from_topk_ids(ids, placement.num_experts)
    per_node = placement.gpus_per_node
    ll_gpu = np.zeros(placement.num_layers)
    ll_node = np.zeros(placement.num_layers)
    nm_gpu = np.zeros(placement.num_layers)
    nm_node = np.zeros(placement.num_layers)
    for layer in range(placement.num_layers):
        for t, token in enumerate(ids[layer]):
            for home in range(placement.num_gpus):  # low-latency: every home GPU equally likely
                dests = [_dest(placement, layer, home, e) for e in token]
                ll_gpu[layer] += sum(d != home for d in dests) / placement.num_gpus
                ll_node[layer] += sum(d // per_node != home // per_node for d in dests) / placement.num_gpus
            home = t % placement.num_gpus  # normal mode: token t lives on GPU t mod G
            dests = [_dest(placement, layer, home, e) for e in token]
            nm_gpu[layer] += len({d for d in dests if d != home})
            nm_node[layer] += len({d // per_node for d in dests if d // per_node != home // per_node})
    got_gpu, got_node = low_latency_traffic(placement, stats.load)
    np.testing.assert_allclose(got_gpu, ll_gpu, atol=1e-9)
    np.testing.assert_allclose(got_node, ll_node, atol=1e-9)
    got_gpu, got_node = normal_mode_traffic(placement, ids)
    np.testing.assert_allclose(got_gpu, nm_gpu / ids.shape[1], atol=1e-9)
    np.testing.assert_allclose(got_node, nm_node / ids.shape[1], atol=1e-9)
    imbalance, remote = placement_step_factors(placement, stats)
    assert (imbalance >= 1 - 1e-9).all() and ((remote >= 0) & (remote <= 1)).all()
