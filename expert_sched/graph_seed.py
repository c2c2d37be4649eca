"""Graph-partitioning seed: group experts that the same tokens use, across all layers at once.

The per-layer CP-SAT models of :mod:`expert_sched.solver` see one layer with its neighbours fixed,
so they improve a placement locally. This module gives them a global starting point:

1. co-usage graph: one node per (layer, expert), node id ``l * E + e``; an edge (l, a) - (l+1, b)
   weighted ``colocation_weight * T[l, a, b]`` (top-1 transitions) and an edge (l, a) - (l, b)
   weighted ``fanout_weight * C[l, a, b]`` (same-layer co-activation, symmetric). Only each node's
   ``neighbours`` heaviest edges of each kind (either endpoint's choice) are kept, which bounds the
   graph at DeepSeek-V3 scale (58 x 256 nodes) to about ``2 * neighbours`` edges per node and kind;
2. partition into G parts, part g = GPU g at every layer, by recursive Kernighan-Lin bisection
   (``networkx.algorithms.community.kernighan_lin_bisection``): a set of nodes destined for k GPUs
   is split into halves for floor(k/2) and ceil(k/2) GPUs. The initial split gives every layer's
   nodes to the two sides in proportion k_left : k_right, alternating by load (heaviest first), so
   both sides start with the same share of each layer's slots and load; Kernighan-Lin then swaps
   node pairs (sizes stay fixed) to cut less edge weight, possibly across layers, after which each
   layer's share is restored by moving the nodes least attached to their side. So every part ends
   with about E / G nodes of every layer (replicas and loads are left to the repair);
3. the partition ignores slot counts and balance; the solver repairs it into a feasible placement
   layer by layer (``solver._Search.graph_start``) and keeps it only if it scores better than the
   EPLB start.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
from networkx.algorithms.community import kernighan_lin_bisection

from .stats import RoutingStats


def _top_pairs(weight: np.ndarray, neighbours: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (a, b) of [A, B] ``weight`` > 0 among row a's or column b's ``neighbours`` largest."""
    keep = np.zeros(weight.shape, dtype=bool)
    if neighbours < weight.shape[1]:
        rows = np.argpartition(-weight, neighbours - 1, axis=1)[:, :neighbours]
        np.put_along_axis(keep, rows, True, axis=1)
    else:
        keep[:] = True
    if neighbours < weight.shape[0]:
        cols = np.argpartition(-weight, neighbours - 1, axis=0)[:neighbours, :]
        np.put_along_axis(keep, cols, True, axis=0)
    else:
        keep[:] = True
    return np.nonzero(keep & (weight > 0))


def co_usage_graph(stats: RoutingStats, colocation_weight: float, fanout_weight: float,
                   neighbours: int = 8) -> nx.Graph:
    """Weighted graph on nodes ``l * E + e`` (see module docstring); weights are per token."""
    num_layers, num_experts = stats.load.shape
    graph = nx.Graph()
    graph.add_nodes_from(range(num_layers * num_experts))
    weights: dict[tuple[int, int], float] = {}

    def add(first: int, second: int, matrix: np.ndarray, scale: float) -> None:
        a, b = _top_pairs(matrix, neighbours)
        for u, v, w in zip(first + a, second + b, matrix[a, b] * scale):
            key = (int(min(u, v)), int(max(u, v)))
            weights[key] = weights.get(key, 0.0) + float(w)

    if colocation_weight > 0 and stats.transitions is not None:
        for layer in range(num_layers - 1):
            add(layer * num_experts, (layer + 1) * num_experts, stats.transitions[layer], colocation_weight)
    if fanout_weight > 0 and stats.coactivation is not None:
        for layer in range(num_layers):
            # C is symmetric, so (a, b) and (b, a) are both kept or both dropped: half weight each
            add(layer * num_experts, layer * num_experts, stats.coactivation[layer], fanout_weight / 2)
    graph.add_weighted_edges_from((u, v, w) for (u, v), w in weights.items())
    return graph


def _proportional_split(nodes: np.ndarray, layer_of: np.ndarray, load_of: np.ndarray,
                        left_share: float) -> tuple[set[int], set[int]]:
    """Split ``nodes`` so that each layer gives ``left_share`` of its nodes to the left, alternating
    by load (heaviest first)."""
    left, right = set(), set()
    for layer in np.unique(layer_of[nodes]):
        members = nodes[layer_of[nodes] == layer]
        members = members[np.argsort(-load_of[members], kind="stable")]
        for i, node in enumerate(members):
            goes_left = np.floor((i + 1) * left_share) > np.floor(i * left_share)
            (left if goes_left else right).add(int(node))
    return left, right


def _restore_layer_shares(graph: nx.Graph, left: set[int], right: set[int], layer_of: np.ndarray,
                          left_counts: dict[int, int]) -> None:
    """Move nodes between ``left`` and ``right`` (in place) until every layer l has
    ``left_counts[l]`` nodes on the left, moving the nodes least attached to their side first
    (attachment: edge weight to their own side minus edge weight to the other)."""
    by_layer: dict[int, list[int]] = {}
    for node in left:
        by_layer.setdefault(int(layer_of[node]), []).append(node)
    for layer, target in left_counts.items():
        excess = len(by_layer.get(layer, [])) - target
        if excess == 0:
            continue
        source, dest = (left, right) if excess > 0 else (right, left)
        members = [n for n in source if layer_of[n] == layer]

        def attachment(node: int) -> float:
            return sum(d["weight"] if nb in source else -d["weight"] for nb, d in graph.adj[node].items())

        for node in sorted(members, key=lambda n: (attachment(n), n))[:abs(excess)]:
            source.remove(node)
            dest.add(node)


def partition(graph: nx.Graph, load: np.ndarray, num_parts: int, max_iter: int = 4,
              seed: int = 0) -> np.ndarray:
    """[L, E] part (GPU) of every (layer, expert) node by recursive Kernighan-Lin bisection.

    load: [L, E] tokens per expert (orders the initial splits).
    """
    num_layers, num_experts = load.shape
    layer_of = np.repeat(np.arange(num_layers), num_experts)
    load_of = load.ravel()
    part = np.zeros(num_layers * num_experts, dtype=np.int64)

    def split(nodes: np.ndarray, first_part: int, parts: int) -> None:
        if parts == 1:
            part[nodes] = first_part
            return
        left_parts = parts // 2
        left, right = _proportional_split(nodes, layer_of, load_of, left_parts / parts)
        left_counts = {int(layer): sum(1 for n in left if layer_of[n] == layer) for layer in np.unique(layer_of[nodes])}
        if left and right:
            first, second = kernighan_lin_bisection(graph.subgraph(nodes.tolist()), partition=(left, right),
                                                    max_iter=max_iter, weight="weight", seed=seed)
            # sizes are kept, but networkx 3.6 returns the sides in the other order: match them
            if len(first) != len(left) or (len(first) == len(second) and len(first & left) < len(second & left)):
                first, second = second, first
            left, right = first, second
            _restore_layer_shares(graph, left, right, layer_of, left_counts)
        split(np.array(sorted(left), dtype=np.int64), first_part, left_parts)
        split(np.array(sorted(right), dtype=np.int64), first_part + left_parts, parts - left_parts)

    split(np.arange(num_layers * num_experts), 0, num_parts)
    return part.reshape(num_layers, num_experts)


def seed_partition(stats: RoutingStats, num_gpus: int, colocation_weight: float, fanout_weight: float,
                   neighbours: int = 8, max_iter: int = 4, seed: int = 0) -> np.ndarray:
    """[L, E] GPU of every (layer, expert) under the partition of the co-usage graph."""
    graph = co_usage_graph(stats, colocation_weight, fanout_weight, neighbours)
    return partition(graph, stats.load, num_gpus, max_iter, seed)
