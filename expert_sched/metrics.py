"""Quality of an expert placement: balance, co-location, dispatch traffic, memory.

Notation: ``w[l, e]`` tokens routed to logical expert e at MoE layer l (all top-k slots);
``c[l, e]`` its replica count; ``h[l, e, g]`` replicas of e on GPU g; G GPUs, N nodes.

Shared execution model (SGLang with DP attention + DeepEP): each token lives on a "home" GPU, the
home GPUs are uniform and independent of routing, and a replica of an expert takes an equal share
``w[l, e] / c[l, e]`` of its expert's tokens. A token that needs expert e is sent to the nearest
replica (same GPU, else same node, else any), as SGLang's static dispatch map does
(``srt/eplb/expert_location.py``, ``compute_logical_to_rank_dispatch_physical_map``).
"""

from __future__ import annotations

import numpy as np

from .placement import Placement
from .stats import RoutingStats


def gpu_loads(placement: Placement, load: np.ndarray) -> np.ndarray:
    """[L, G] tokens processed per GPU: ``sum_e h[l, e, g] * w[l, e] / c[l, e]``."""
    per_replica = load / placement.counts()
    return np.einsum("leg,le->lg", placement.hosts(), per_replica)


def balancedness_sglang(loads: np.ndarray) -> float:
    """SGLang's balancedness: ``mean_l( mean_g load[l, g] / max_g load[l, g] )`` (1 = perfect).

    SGLang (``compute_utilization_rate``) adds 1e-5 to both terms; that only matters for idle layers.
    """
    return float(np.mean((loads.mean(1) + 1e-5) / (loads.max(1) + 1e-5)))


def balancedness_vllm(loads: np.ndarray) -> float:
    """vLLM's balancedness: ``sum_l mean_g load[l, g] / sum_l max_g load[l, g]``."""
    return float(loads.mean(1).sum() / max(loads.max(1).sum(), 1e-12))


def stay_matrix(hosts_now: np.ndarray, hosts_next: np.ndarray) -> np.ndarray:
    """[E, E] share of transitions a -> b between two layers with replicas [E, G] that stay on one GPU.

    ``stay[a, b] = sum_g (h[l, a, g] / c[l, a]) * [h[l+1, b, g] > 0]``: a's tokens spread evenly
    over a's replicas; those on GPU g stay if g holds a replica of b.
    """
    share = hosts_now / hosts_now.sum(1, keepdims=True)
    return share @ (hosts_next > 0).T.astype(np.float64)


def colocation(placement: Placement, transitions: np.ndarray) -> float:
    """Share of consecutive-layer top-1 transitions that can stay on one GPU.

    ``sum_{l,a,b} T[l, a, b] * stay_l[a, b] / sum T`` (see :func:`stay_matrix`). Execution model:
    ExFlow-style, a token continues on the GPU of its layer-l expert replica, so a co-located
    transition needs no cross-GPU transfer before layer l+1.
    """
    return colocation_of_hosts(placement.hosts(), transitions)


def colocation_of_hosts(hosts: np.ndarray, transitions: np.ndarray) -> float:
    """:func:`colocation` of replicas per GPU ``hosts`` [L, E, G]."""
    total = transitions.sum()
    if total <= 0:
        return 0.0
    return float(kept_transitions(hosts, transitions).sum()) / float(total)


def kept_transitions(hosts: np.ndarray, transitions: np.ndarray) -> np.ndarray:
    """[L-1] transitions of each consecutive layer pair that stay on one GPU, for replicas
    ``hosts`` [L, E, G]: ``kept[l] = sum_{a,b} T[l, a, b] * stay_l[a, b]`` (:func:`stay_matrix`)."""
    return np.array([float((transitions[l] * stay_matrix(hosts[l], hosts[l + 1])).sum())
                     for l in range(transitions.shape[0])])


def pair_colocation_of_hosts(hosts: np.ndarray, coactivation: np.ndarray) -> float:
    """Share of same-layer co-activated expert pairs whose copies share a GPU, for replicas [L, E, G].

    ``sum_{l,a,b} C[l, a, b] * sum_g (h[l, a, g] / c[l, a]) * (h[l, b, g] / c[l, b]) / sum C``:
    a token choosing a and b uses one of each expert's replicas, each with equal probability and
    independently. DeepEP normal mode sends one copy per distinct destination GPU, so every pair that
    shares a GPU saves copies: this is the proxy the solver's fan-out objective maximises; the
    exact fan-out is :func:`normal_mode_traffic`.
    """
    total = coactivation.sum()
    if total <= 0:
        return 0.0
    share = hosts / hosts.sum(2, keepdims=True)
    kept = sum(float((coactivation[l] * (share[l] @ share[l].T)).sum()) for l in range(coactivation.shape[0]))
    return kept / float(total)


def low_latency_traffic(placement: Placement, load: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeepEP low-latency mode: one copy per (token, selected expert). Returns per-layer [L] copies
    leaving the home GPU and leaving the home node:

    ``cross_gpu[l] = sum_e w[l, e] * (1 - gpus_with_e / G)``,
    ``cross_node[l] = sum_e w[l, e] * (1 - nodes_with_e / N)``
    (a token stays local iff its home GPU / node holds a replica; nearest-replica dispatch).
    """
    gpus_with = (placement.hosts() > 0).sum(2)
    nodes_with = (placement.node_hosts() > 0).sum(2)
    cross_gpu = (load * (1 - gpus_with / placement.num_gpus)).sum(1)
    cross_node = (load * (1 - nodes_with / placement.num_nodes)).sum(1)
    return cross_gpu, cross_node


def dispatch_destinations(placement: Placement, layer: int) -> np.ndarray:
    """[G, E] GPU that a token homed on GPU h sends its expert-e copy to.

    h itself if it holds e; else the lowest-numbered GPU of h's node holding e; else the
    ``(h mod c_e)``-th GPU holding e (SGLang spreads such ranks fairly over the replicas).
    """
    present = placement.hosts()[layer] > 0  # [E, G]
    num_gpus, per_node = placement.num_gpus, placement.gpus_per_node
    homes = np.arange(num_gpus)
    by_rank = np.argsort(~present, axis=1, kind="stable")  # GPUs holding e first, ascending
    spread = np.take_along_axis(by_rank, homes[None, :] % present.sum(1)[:, None], axis=1)  # [E, G]
    in_node = present.reshape(present.shape[0], placement.num_nodes, per_node)
    first_in_node = in_node.argmax(2) + np.arange(placement.num_nodes) * per_node  # [E, N]
    node_of_home = homes // per_node
    dest = np.where(in_node.any(2)[:, node_of_home], first_in_node[:, node_of_home], spread)
    return np.where(present, homes[None, :], dest).T


def normal_mode_traffic(placement: Placement, token_topk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeepEP normal mode: one copy per distinct destination GPU per token (experts of one token
    on one GPU share a copy); cross-node: one RDMA copy per distinct destination node, forwarded
    over NVLink inside it. Counted exactly on the token sample ``token_topk`` [L, T, k] (logical
    ids), token t living on home GPU ``t mod G`` (homes uniform and independent of routing).
    Returns per-layer [L] mean copies per token leaving the home GPU and leaving the home node.
    """
    num_layers, num_tokens, _ = token_topk.shape
    homes = (np.arange(num_tokens) % placement.num_gpus)[:, None]
    cross_gpu, cross_node = np.zeros(num_layers), np.zeros(num_layers)
    for layer in range(num_layers):
        dest = dispatch_destinations(placement, layer)[homes, token_topk[layer]]  # [T, k]
        for targets, home, out in ((dest, homes, cross_gpu),
                                   (dest // placement.gpus_per_node, homes // placement.gpus_per_node, cross_node)):
            ordered = np.sort(targets, axis=1)
            distinct = 1 + (np.diff(ordered, axis=1) != 0).sum(1)
            out[layer] = float((distinct - (ordered == home).any(1)).mean())
    return cross_gpu, cross_node


def replica_memory(placement: Placement, expert_bytes: int | None = None) -> dict[str, float | int | None]:
    """Expert weight memory: replicas per GPU (S per layer, ``S * L`` in all) and redundant replicas
    (``R * L``); in bytes when ``expert_bytes`` (one expert's weights in one layer) is given."""
    per_gpu = placement.slots_per_gpu * placement.num_layers
    redundant = (placement.num_slots - placement.num_experts) * placement.num_layers
    return {"replicas_per_gpu": per_gpu, "redundant_replicas": redundant,
            "bytes_per_gpu": None if expert_bytes is None else per_gpu * expert_bytes,
            "redundant_bytes": None if expert_bytes is None else redundant * expert_bytes}


#: expert-parallel execution models of :func:`placement_step_factors` (the first is the default)
EXECUTION_MODELS: tuple[str, ...] = ("deepep-low-latency", "affinity")
DEFAULT_EXECUTION_MODEL = EXECUTION_MODELS[0]


def placement_step_factors(placement: Placement, stats: RoutingStats,
                           execution: str = DEFAULT_EXECUTION_MODEL) -> tuple[np.ndarray, np.ndarray]:
    """Inputs for the step-latency model, per MoE layer [L]:

    - ``imbalance[l] = max_g load[l, g] / mean_g load[l, g]`` (>= 1): the slowest GPU's expert work
      relative to a perfectly balanced layer (the same under every execution model);
    - ``remote_fraction[l]``: share of (token, expert) copies that leave the GPU the token is on,
      under the execution model ``execution``:

      - ``"deepep-low-latency"`` (SGLang with DP attention + DeepEP, the shared model above): a
        token's GPU is its home, uniform and independent of routing, so
        ``remote[l] = cross_gpu_low_latency[l] / sum_e w[l, e]`` (:func:`low_latency_traffic`)
        depends only on which GPUs hold each expert, not on which experts share a GPU;
      - ``"affinity"`` (ExFlow-style): a token is dispatched from the GPU that held its layer l-1
        top-1 expert replica (a's tokens spread evenly over a's replicas), so the transition
        a -> b stays local with probability ``stay_{l-1}[a, b]``, exactly the event
        :func:`colocation` counts: ``remote[l] = 1 - kept[l-1] / sum_{a,b} T[l-1, a, b]``
        (:func:`kept_transitions`) for l >= 1; layer 0 (and a layer pair without transitions)
        keeps the low-latency share. All k copies of a token are taken as local exactly when its
        top-1 route is: exact for top-1 routing; for top-k > 1 the statistics record only the
        top-1 route, so this is the affinity model's best case (if the other k - 1 copies were
        placed independently, only 1/k of the difference to low latency would remain).

    Raises ValueError for an unknown ``execution`` or, for ``"affinity"``, stats without transitions.
    """
    if execution not in EXECUTION_MODELS:
        raise ValueError(f"execution model {execution!r}: expected one of {', '.join(EXECUTION_MODELS)}")
    loads = gpu_loads(placement, stats.load)
    imbalance = loads.max(1) / np.maximum(loads.mean(1), 1e-12)
    cross_gpu, _ = low_latency_traffic(placement, stats.load)
    remote = cross_gpu / np.maximum(stats.load.sum(1), 1e-12)
    if execution == "affinity":
        if stats.transitions is None:
            raise ValueError(f"{stats.source}: the affinity execution model needs 'transitions' "
                             "(top-1 expert at consecutive MoE layers), which these statistics lack")
        mass = stats.transitions.sum((1, 2))
        kept = kept_transitions(placement.hosts(), stats.transitions)
        remote[1:] = np.where(mass > 0, 1 - kept / np.maximum(mass, 1e-12), remote[1:])
    return imbalance, remote


def evaluate(placement: Placement, stats: RoutingStats, expert_bytes: int | None = None) -> dict[str, object]:
    """All metrics of ``placement`` on ``stats`` as a JSON-ready dict (per-token-layer traffic)."""
    loads = gpu_loads(placement, stats.load)
    ll_gpu, ll_node = low_latency_traffic(placement, stats.load)
    result: dict[str, object] = {
        "balancedness_sglang": balancedness_sglang(loads),
        "balancedness_vllm": balancedness_vllm(loads),
        "colocation": None if stats.transitions is None else colocation(placement, stats.transitions),
        "pair_colocation": None if stats.coactivation is None
        else pair_colocation_of_hosts(placement.hosts(), stats.coactivation),
        "ll_cross_gpu_share": float(ll_gpu.sum() / max(stats.load.sum(), 1e-12)),
        "ll_cross_node_share": float(ll_node.sum() / max(stats.load.sum(), 1e-12)),
        "normal_cross_gpu_per_token": None,
        "normal_cross_node_per_token": None,
        "memory": replica_memory(placement, expert_bytes),
    }
    if stats.token_topk is not None:
        n_gpu, n_node = normal_mode_traffic(placement, stats.token_topk)
        result["normal_cross_gpu_per_token"] = float(n_gpu.mean())
        result["normal_cross_node_per_token"] = float(n_node.mean())
    return result
