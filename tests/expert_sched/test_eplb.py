import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from expert_sched.eplb import eplb_placement, logical_to_physical, rebalance_hierarchical
from expert_sched.metrics import balancedness_sglang, gpu_loads
from expert_sched.placement import Placement

SGLANG_PYTHON = Path(__file__).resolve().parents[2] / ".venvs" / "sglang" / "bin" / "python"


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 3), st.sampled_from([(8, 4, 2, 2), (16, 8, 4, 4), (12, 4, 1, 3), (6, 6, 1, 2)]),
       st.integers(0, 2), st.integers(0, 10_000))
def test_every_expert_replicated_and_slots_exact(num_layers, shape, extra_per_gpu, seed):
    num_experts, num_groups, num_nodes, num_gpus = shape
    num_redundant = extra_per_gpu * num_gpus
    load = np.random.default_rng(seed).integers(0, 100, size=(num_layers, num_experts)).astype(float)
    placement = eplb_placement(load, num_gpus, num_redundant, num_nodes, num_groups)
    counts = placement.counts()
    assert (counts >= 1).all()
    assert (counts.sum(1) == num_experts + num_redundant).all()
    assert placement.phy2log.shape == (num_layers, num_experts + num_redundant)


def test_hierarchical_keeps_groups_on_one_node():
    load = np.random.default_rng(1).integers(1, 1000, size=(4, 32)).astype(float)
    placement = eplb_placement(load, num_gpus=8, num_redundant=8, num_nodes=4, num_groups=8)
    node_hosts = placement.node_hosts() > 0
    for layer in range(4):
        for group in range(8):
            nodes = node_hosts[layer, group * 4:(group + 1) * 4].any(0)
            assert nodes.sum() == 1  # a group and its replicas live on one node


def test_replication_improves_balance():
    load = np.array([[1000.0, 10, 10, 10, 10, 10, 10, 10]])
    plain = eplb_placement(load, num_gpus=4, num_redundant=0)
    replicated = eplb_placement(load, num_gpus=4, num_redundant=4)
    assert replicated.counts()[0, 0] > 1
    assert balancedness_sglang(gpu_loads(replicated, load)) > balancedness_sglang(gpu_loads(plain, load))


def _cases():
    rng = np.random.default_rng(7)
    cases = []
    for num_layers, num_experts, num_groups, num_nodes, num_gpus, num_physical in [
            (3, 64, 1, 1, 8, 64), (3, 64, 1, 1, 8, 72), (3, 64, 1, 1, 16, 80), (2, 256, 8, 8, 64, 320),
            (2, 256, 8, 4, 32, 288), (4, 16, 4, 2, 4, 20)]:
        distinct = np.stack([rng.permutation(num_experts) * 37 + 5 for _ in range(num_layers)])
        tied = rng.integers(0, 20, size=(num_layers, num_experts))  # many equal loads
        for weight in (distinct, tied):
            for hierarchical in (False, True):
                cases.append({"weight": weight.tolist(), "num_physical": num_physical, "num_groups": num_groups,
                              "num_nodes": num_nodes, "num_gpus": num_gpus, "hierarchical": hierarchical,
                              "ties": weight is tied})
    return cases


@pytest.mark.sglang
@pytest.mark.skipif(not SGLANG_PYTHON.exists(), reason="SGLang venv (.venvs/sglang) not installed")
def test_matches_sglang_deepseek_eplb():
    """Identical output on distinct loads; with equal loads torch's unstable sort orders ties its own
    way, so there the experts on each GPU may differ among equals but every GPU's load is identical
    (the replicas of one expert always tie, so their replica ranks may be swapped)."""
    cases = _cases()
    proc = subprocess.run([str(SGLANG_PYTHON), str(Path(__file__).with_name("sglang_eplb_reference.py"))],
                          input=json.dumps(cases), capture_output=True, text=True, timeout=300, check=True)
    for case, ref in zip(cases, json.loads(proc.stdout), strict=True):
        weight = np.asarray(case["weight"], dtype=float)
        groups, nodes = (case["num_groups"], case["num_nodes"]) if case["hierarchical"] else (1, 1)
        phy2log, rank, count = rebalance_hierarchical(weight, case["num_physical"], groups, nodes, case["num_gpus"])
        if not case["ties"]:
            np.testing.assert_array_equal(phy2log, ref["phy2log"])
            np.testing.assert_array_equal(count, ref["logcnt"])
            # replicas of one expert carry equal loads (a tie), so only their set of slots must agree
            np.testing.assert_array_equal(np.sort(logical_to_physical(phy2log, rank, count), axis=2),
                                          np.sort(np.asarray(ref["log2phy"]), axis=2))
        ours = Placement(phy2log, weight.shape[1], case["num_gpus"], case["num_nodes"])
        theirs = Placement(np.asarray(ref["phy2log"]), weight.shape[1], case["num_gpus"], case["num_nodes"])
        np.testing.assert_allclose(gpu_loads(ours, weight), gpu_loads(theirs, weight), rtol=1e-6)
