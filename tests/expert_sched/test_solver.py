import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from expert_sched.eplb import eplb_placement
from expert_sched.metrics import balancedness_sglang, colocation, gpu_loads, pair_colocation_of_hosts
from expert_sched.sglang_algorithm import rebalance
from expert_sched.solver import SolverOptions, solve_placement
from expert_sched.stats import load_stats, stats_from_topk_ids

from expert_sched_strategies import layouts


def _stats(num_layers, num_experts, seed):
    rng = np.random.default_rng(seed)
    k = min(2, num_experts)
    pref = rng.integers(num_experts, size=(num_layers, 4))  # 4 "topics" give inter-layer affinity
    ids = np.empty((num_layers, 60, k), dtype=np.int64)
    topic = rng.integers(4, size=60)
    for layer in range(num_layers):
        for t in range(60):
            first = pref[layer, topic[t]] if rng.random() < 0.7 else rng.integers(num_experts)
            rest = [e for e in rng.permutation(num_experts) if e != first][:k - 1]
            ids[layer, t] = [first, *rest]
    return stats_from_topk_ids(ids, num_experts)


def _objective(placement, stats, objective):
    """The solver's objective (module docstring of expert_sched.solver) from the public metrics."""
    value = 0.0
    if objective in ("colocation", "both"):
        value += colocation(placement, stats.transitions)
    if objective in ("fanout", "both"):
        value += pair_colocation_of_hosts(placement.hosts(), stats.coactivation)
    return value


@settings(max_examples=8, deadline=None)
@given(layouts(), st.integers(0, 1000), st.sampled_from([None, 0, 1]),
       st.sampled_from(["colocation", "fanout", "both"]))
def test_solution_invariants(layout, seed, max_moves, objective):
    num_layers, num_experts, num_gpus, num_nodes, num_redundant = layout
    stats = _stats(num_layers, num_experts, seed)
    assume(objective == "colocation" or stats.coactivation.sum() > 0)  # one expert: no pairs to co-locate
    current = None
    if max_moves is not None:  # migrate from EPLB's placement of other loads
        current = eplb_placement(stats.load[:, ::-1].copy(), num_gpus, num_redundant, num_nodes)
    result = solve_placement(stats, num_gpus, num_redundant, num_nodes,
                             options=SolverOptions(deterministic_time=0.2, current=current, max_moves=max_moves,
                                                   objective=objective))
    placement = result.placement
    counts = placement.counts()
    assert (counts >= 1).all()
    assert placement.phy2log.shape == (num_layers, num_experts + num_redundant)
    if current is None:
        # balance floor: every layer at least as balanced as EPLB (integer rounding: 1e-5)
        ours = gpu_loads(placement, stats.load)
        eplb = gpu_loads(result.eplb, stats.load)
        assert (ours.max(1) <= eplb.max(1) * (1 + 1e-5) + 1e-9).all()
        if result.eplb.hosts().max() <= 1:  # EPLB is then the warm start itself: never worse than it
            assert _objective(placement, stats, objective) >= _objective(result.eplb, stats, objective) - 1e-9
    else:
        new = (placement.hosts() > 0) & (current.hosts() == 0)
        assert new.sum(1).max() <= max_moves  # per layer and GPU
    assert result.bound >= result.objective - 1e-6


def test_deterministic_budget_reproduces_the_placement():
    stats = _stats(3, 12, 5)
    options = SolverOptions(deterministic_time=0.3, objective="both", seed=3)
    first = solve_placement(stats, 4, 4, options=options)
    second = solve_placement(stats, 4, 4, options=options)
    np.testing.assert_array_equal(first.placement.phy2log, second.placement.phy2log)
    assert first.start == second.start and first.objective == second.objective


def test_olmoe_colocation_beats_eplb():
    """Deterministic budget and seed: the result does not depend on the machine's speed or load."""
    stats = load_stats("data/routing/olmoe_routing_counts.npz", "c4")
    result = solve_placement(stats, 8, 0, options=SolverOptions(deterministic_time=1.0))
    ours, eplb = colocation(result.placement, stats.transitions), colocation(result.eplb, stats.transitions)
    assert ours > 1.3 * eplb
    assert balancedness_sglang(gpu_loads(result.placement, stats.load)) >= \
        balancedness_sglang(gpu_loads(result.eplb, stats.load)) - 1e-5


def test_fanout_objective_needs_coactivation():
    stats = load_stats("data/routing/olmoe_routing_counts.npz", "c4")  # transitions only
    with pytest.raises(ValueError, match="coactivation"):
        solve_placement(stats, 8, 0, options=SolverOptions(objective="fanout", deterministic_time=0.1))
    with pytest.raises(ValueError, match="objective must be one of"):
        solve_placement(stats, 8, 0, options=SolverOptions(objective="speed", deterministic_time=0.1))


def test_rebalance_has_sglang_shapes():
    stats = _stats(3, 8, 0)
    tokens = np.stack([stats.load / 2, stats.load / 2])  # [steps, L, E]
    phy2log, log2phy, logcnt = rebalance(tokens, 12, 3, None, 1, transitions=stats.transitions,
                                         options=SolverOptions(time_limit=0.5))
    assert phy2log.shape == (3, 12) and logcnt.shape == (3, 8)
    assert log2phy.shape[:2] == (3, 8) and log2phy.shape[2] == logcnt.max()
    for layer in range(3):
        for expert in range(8):
            slots = log2phy[layer, expert][log2phy[layer, expert] >= 0]
            assert len(slots) == logcnt[layer, expert]
            assert (phy2log[layer, slots] == expert).all()
