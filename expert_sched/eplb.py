"""DeepSeek's EPLB (expert-parallel load balancer), written anew in numpy: the baseline placement.

Algorithm (DeepSeek, github.com/deepseek-ai/EPLB, vendored by SGLang 0.5.23 as
``srt/eplb/eplb_algorithms/deepseek.py``); this module reimplements it from that description and
reproduces SGLang's output on the same input (``tests/expert_sched/test_eplb_matches_sglang.py``):

1. hierarchical only: pack the E/``num_groups``-expert groups onto nodes, each node receiving the same
   number of groups, greedily (heaviest group first onto the lightest node that still has room);
2. within each node (globally when not hierarchical), add redundant replicas one at a time, each to
   the expert with the highest load per replica (``load / replica_count``);
3. pack the replicas of each node onto its GPUs with the same greedy (heaviest replica first onto the
   lightest GPU with a free slot), a replica carrying ``load / replica_count``.

Loads are processed as float32, as in the reference. Ties go to the lowest index.
"""

from __future__ import annotations

import numpy as np

from .placement import Placement, check_layout


def balanced_packing(weight: np.ndarray, num_packs: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy equal-cardinality packing of items onto packs, per row.

    weight: [X, n] item weights (n divisible by ``num_packs``).
    Returns ``pack_index`` [X, n] (pack of each item) and ``rank_in_pack`` [X, n] (its position there).
    """
    rows, num_items = weight.shape
    if num_items % num_packs:
        raise ValueError(f"{num_items} items cannot be split evenly over {num_packs} packs")
    capacity = num_items // num_packs
    if capacity == 1:
        return np.tile(np.arange(num_items), (rows, 1)), np.zeros((rows, num_items), dtype=np.int64)
    pack_index = np.empty((rows, num_items), dtype=np.int64)
    rank_in_pack = np.empty((rows, num_items), dtype=np.int64)
    for row in range(rows):
        pack_weight = np.zeros(num_packs, dtype=np.float64)
        pack_size = np.zeros(num_packs, dtype=np.int64)
        for item in np.argsort(-weight[row], kind="stable"):
            pack = int(np.where(pack_size < capacity, pack_weight, np.inf).argmin())
            pack_index[row, item] = pack
            rank_in_pack[row, item] = pack_size[pack]
            pack_weight[pack] += float(weight[row, item])
            pack_size[pack] += 1
    return pack_index, rank_in_pack


def replicate_experts(weight: np.ndarray, num_physical: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spread ``num_physical - n`` redundant replicas over n experts to minimise the max per-replica load.

    weight: [X, n]. Returns ``phy2log`` [X, num_physical] (expert of each replica; replica i < n is
    expert i), ``rank`` [X, num_physical] (replica index of that expert) and ``count`` [X, n].
    """
    rows, num_logical = weight.shape
    if num_physical < num_logical:
        raise ValueError(f"{num_physical} physical slots cannot hold {num_logical} experts")
    phy2log = np.tile(np.arange(num_physical), (rows, 1))
    rank = np.zeros((rows, num_physical), dtype=np.int64)
    count = np.ones((rows, num_logical), dtype=np.int64)
    row_ids = np.arange(rows)
    for slot in range(num_logical, num_physical):
        busiest = (weight / count.astype(np.float32)).argmax(axis=-1)
        phy2log[:, slot] = busiest
        rank[:, slot] = count[row_ids, busiest]
        count[row_ids, busiest] += 1
    return phy2log, rank, count


def _inverse_permutation(perm: np.ndarray) -> np.ndarray:
    inverse = np.empty_like(perm)
    np.put_along_axis(inverse, perm, np.broadcast_to(np.arange(perm.shape[1]), perm.shape), axis=1)
    return inverse


def rebalance_hierarchical(weight: np.ndarray, num_physical: int, num_groups: int, num_nodes: int,
                           num_gpus: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hierarchical EPLB (global EPLB is ``num_groups = num_nodes = 1``).

    weight: [L, E] load per logical expert. Returns ``phy2log`` [L, P], ``replica_rank`` [L, P] and
    ``count`` [L, E].
    """
    weight = np.asarray(weight, dtype=np.float32)
    num_layers, num_logical = weight.shape
    if num_logical % num_groups or num_groups % num_nodes or num_gpus % num_nodes or num_physical % num_gpus:
        raise ValueError(f"EPLB needs E % groups == groups % nodes == G % nodes == P % G == 0; got E={num_logical} "
                         f"groups={num_groups} nodes={num_nodes} G={num_gpus} P={num_physical}")
    group_size = num_logical // num_groups
    groups_per_node = num_groups // num_nodes
    slots_per_gpu = num_physical // num_gpus
    experts_per_node = num_logical // num_nodes

    # 1. groups -> nodes; "node-major" order lists node 0's experts first, then node 1's, ...
    group_load = weight.reshape(num_layers, num_groups, group_size).sum(-1)
    node_of_group, rank_of_group = balanced_packing(group_load, num_nodes)
    group_start = (node_of_group * groups_per_node + rank_of_group) * group_size
    log2nodemajor = (group_start[:, :, None] + np.arange(group_size)).reshape(num_layers, num_logical)
    nodemajor2log = _inverse_permutation(log2nodemajor)

    # 2. replicas within each node: rows are (layer, node)
    node_load = np.take_along_axis(weight, nodemajor2log, axis=1).reshape(-1, experts_per_node)
    phy2local, local_rank, local_count = replicate_experts(node_load, num_physical // num_nodes)

    # 3. replicas -> GPUs of the node
    replica_load = np.take_along_axis(node_load / local_count.astype(np.float32), phy2local, axis=1)
    gpu_of_replica, rank_on_gpu = balanced_packing(replica_load, num_gpus // num_nodes)
    slot_of_replica = gpu_of_replica * slots_per_gpu + rank_on_gpu
    replica_of_slot = _inverse_permutation(slot_of_replica)

    slot2local = np.take_along_axis(phy2local, replica_of_slot, axis=1).reshape(num_layers, num_nodes, -1)
    slot2nodemajor = (slot2local + (np.arange(num_nodes) * experts_per_node)[None, :, None]).reshape(num_layers, -1)
    phy2log = np.take_along_axis(nodemajor2log, slot2nodemajor, axis=1)
    replica_rank = np.take_along_axis(local_rank, replica_of_slot, axis=1).reshape(num_layers, -1)
    count = np.take_along_axis(local_count.reshape(num_layers, -1), log2nodemajor, axis=1)
    return phy2log, replica_rank, count


def logical_to_physical(phy2log: np.ndarray, replica_rank: np.ndarray, count: np.ndarray) -> np.ndarray:
    """[L, E, X] physical slots of each logical expert by replica rank, padded with -1 (X = max count)."""
    num_layers, num_physical = phy2log.shape
    width = int(count.max())
    out = np.full((num_layers, count.shape[1], width), -1, dtype=np.int64)
    layer_ids = np.repeat(np.arange(num_layers), num_physical)
    out[layer_ids, phy2log.ravel(), replica_rank.ravel()] = np.tile(np.arange(num_physical), num_layers)
    return out


def use_hierarchical(num_groups: int | None, num_nodes: int) -> bool:
    """SGLang's ``auto`` choice: hierarchical iff the model has expert groups divisible by the nodes."""
    return num_groups is not None and num_groups % num_nodes == 0


def eplb_placement(load: np.ndarray, num_gpus: int, num_redundant: int, num_nodes: int = 1,
                   num_groups: int | None = None) -> Placement:
    """EPLB placement for loads [L, E], as SGLang's ``auto`` algorithm would choose it."""
    num_layers, num_experts = load.shape
    check_layout(num_experts, num_redundant, num_gpus, num_nodes)
    hierarchical = use_hierarchical(num_groups, num_nodes)
    phy2log, _, _ = rebalance_hierarchical(load, num_experts + num_redundant,
                                           num_groups if hierarchical else 1,
                                           num_nodes if hierarchical else 1, num_gpus)
    return Placement(phy2log, num_experts=num_experts, num_gpus=num_gpus, num_nodes=num_nodes)
