"""The EPLB hooks around SGLang's algorithm registry (called with SGLang's own functions)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sglang")
pytestmark = pytest.mark.sglang

import torch  # noqa: E402
from sglang.srt.eplb import eplb_algorithms  # noqa: E402
from sglang.srt.eplb.eplb_algorithms import EplbAlgorithm  # noqa: E402

from expert_sched.sglang_algorithm import rebalance  # noqa: E402
from sglang_patches.hooks.eplb import ALGORITHM_NAME, EplbHooks  # noqa: E402

COUNTS = torch.tensor(np.random.default_rng(3).integers(0, 500, size=(4, 3, 8)))


def make_hooks(calls: list[int]) -> EplbHooks:
    def inputs() -> dict[str, object]:
        calls.append(1)
        return {}
    return EplbHooks(rebalance, inputs)


def test_name_resolution_claims_only_moesched() -> None:
    hooks = make_hooks([])
    original = eplb_algorithms.compute_algorithm
    assert hooks.compute_algorithm(original, raw_algorithm="moesched", num_groups=None,
                                   num_nodes=1) == ALGORITHM_NAME
    assert hooks.compute_algorithm(original, "auto", None, 1) is EplbAlgorithm.deepseek


def test_marker_runs_our_solver_with_sglang_output_types() -> None:
    calls: list[int] = []
    hooks = make_hooks(calls)
    out = hooks.rebalance_experts(eplb_algorithms.rebalance_experts, tokens_per_expert=COUNTS,
                                  num_physical_experts=16, num_local_physical_experts=4,
                                  num_groups=None, num_nodes=1, algorithm=ALGORITHM_NAME)
    phy2log, log2phy, logcnt = out
    assert all(t.dtype == torch.int64 for t in out)
    assert phy2log.shape == (3, 16) and logcnt.shape == (3, 8) and log2phy.shape[:2] == (3, 8)
    assert (logcnt.sum(1) == 16).all()
    for layer in range(3):  # the three maps agree
        for expert in range(8):
            slots = [s for s in log2phy[layer, expert].tolist() if s != -1]
            assert len(slots) == logcnt[layer, expert] and all(phy2log[layer, s] == expert
                                                               for s in slots)
    hooks.rebalance_experts(eplb_algorithms.rebalance_experts, COUNTS, 16, 4, None, 1,
                            ALGORITHM_NAME)
    assert calls == [1]  # solver inputs are built once, lazily


def test_other_algorithms_reach_sglang_unchanged() -> None:
    hooks = make_hooks([])
    args = dict(tokens_per_expert=COUNTS, num_physical_experts=16, num_local_physical_experts=4,
                num_groups=None, num_nodes=1, algorithm=EplbAlgorithm.deepseek)
    ours = hooks.rebalance_experts(eplb_algorithms.rebalance_experts, **args)
    stock = eplb_algorithms.rebalance_experts(**args)
    assert all(torch.equal(a, b) for a, b in zip(ours, stock))
