"""The co-usage graph and its Kernighan-Lin partition (expert_sched.graph_seed)."""

import networkx as nx
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from expert_sched.graph_seed import _proportional_split, co_usage_graph, partition
from expert_sched.stats import RoutingStats, stats_from_topk_ids


def _planted(num_layers: int, num_experts: int, num_groups: int, seed: int) -> RoutingStats:
    """Tokens of topic z use only experts of block z (a random permutation per layer) at every layer."""
    rng = np.random.default_rng(seed)
    block = num_experts // num_groups
    perms = np.stack([rng.permutation(num_experts) for _ in range(num_layers)])
    topic = rng.integers(num_groups, size=400)
    ids = np.empty((num_layers, 400, 2), dtype=np.int64)
    for layer in range(num_layers):
        for t, z in enumerate(topic):
            ids[layer, t] = perms[layer, z * block + rng.choice(block, 2, replace=False)]
    return stats_from_topk_ids(ids, num_experts)


def test_graph_edges_carry_transitions_and_coactivation():
    stats = _planted(3, 8, 2, 0)
    graph = co_usage_graph(stats, colocation_weight=1.0, fanout_weight=0.0, neighbours=8)
    assert graph.number_of_nodes() == 24
    for u, v, w in graph.edges(data="weight"):
        (lu, a), (lv, b) = divmod(u, 8), divmod(v, 8)
        assert lv == lu + 1 and w == stats.transitions[lu, a, b]
    both = co_usage_graph(stats, colocation_weight=0.0, fanout_weight=2.0, neighbours=8)
    for u, v, w in both.edges(data="weight"):
        (lu, a), (lv, b) = divmod(u, 8), divmod(v, 8)
        assert lu == lv and w == 2.0 * stats.coactivation[lu, a, b]


def test_neighbour_limit_bounds_the_edge_count():
    stats = _planted(4, 16, 2, 1)
    graph = co_usage_graph(stats, 1.0, 0.0, neighbours=2)
    # each kept edge is among its row's or its column's 2 heaviest: at most 2 * (16 + 16) per layer pair
    assert 0 < graph.number_of_edges() <= 3 * 2 * 32


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(2, 20), st.integers(1, 7), st.integers(0, 1000))
def test_partition_gives_every_part_its_share_of_each_layer(layers, experts, parts, seed):
    rng = np.random.default_rng(seed)
    load = rng.integers(1, 50, size=(layers, experts)).astype(float)
    graph = nx.gnp_random_graph(layers * experts, 0.3, seed=seed)
    for u, v in graph.edges:
        graph[u][v]["weight"] = float(rng.integers(1, 10))
    result = partition(graph, load, parts, seed=seed)
    assert result.shape == (layers, experts)
    assert ((result >= 0) & (result < parts)).all()
    sizes = np.stack([np.bincount(row, minlength=parts) for row in result])  # [L, parts]
    # recursive proportional halving: the same part sizes at every layer, within one of E / parts
    assert (sizes == sizes[0]).all()
    assert sizes.max() - sizes.min() <= max(1, int(np.ceil(np.log2(parts))))
    assert sizes.sum(1).tolist() == [experts] * layers


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(1, 30), st.floats(0.05, 0.95), st.integers(0, 1000))
def test_initial_split_gives_each_layer_its_share(layers, experts, share, seed):
    load = np.random.default_rng(seed).random((layers, experts))
    nodes = np.arange(layers * experts)
    layer_of = np.repeat(np.arange(layers), experts)
    left, right = _proportional_split(nodes, layer_of, load.ravel(), share)
    assert left | right == set(nodes.tolist()) and not left & right
    for layer in range(layers):
        in_left = sum(1 for n in left if n // experts == layer)
        assert in_left == int(np.floor(experts * share))


def test_planted_groups_are_recovered():
    stats = _planted(3, 16, 4, 2)
    parts = partition(co_usage_graph(stats, 1.0, 1.0), stats.load, 4)
    # the transitions and co-activations never leave a topic's blocks, so no edge is cut
    graph = co_usage_graph(stats, 1.0, 1.0)
    flat = parts.ravel()
    assert all(flat[u] == flat[v] for u, v in graph.edges)
