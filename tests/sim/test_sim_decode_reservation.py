"""SGLang's admission headroom for future decode tokens (``EngineConfig.decode_reservation``)."""

from __future__ import annotations

import pytest

from engine_dispatch.factory import create_dispatcher
from experiments.sim.cluster import simulate
from experiments.sim.config import ClusterConfig, EngineConfig
from experiments.sim.decode_reservation import NewTokenRatio, clipped_new_tokens
from experiments.workloads.types import TraceRequest
from perf_model.presets import preset_model
from request_sched.policies import create_queue


def test_new_token_ratio_follows_sglang_defaults():
    ratio = NewTokenRatio()
    assert ratio.current == 0.7
    for _ in range(300):
        ratio.decay_step()
    assert ratio.current == pytest.approx(0.7 - 300 * (0.7 - 0.098) / 600)
    for _ in range(400):
        ratio.decay_step()
    assert ratio.current == pytest.approx(0.098)  # floor: 0.7 x 0.14
    ratio.after_retract([(100, 1000), (300, 1000)])
    assert ratio.current == pytest.approx((400 + 20 * 2) / 2001)
    ratio.after_retract([(5000, 100)])
    assert ratio.current == 1.0
    ratio.reset()
    assert ratio.current == 0.7


def test_clipped_new_tokens():
    assert clipped_new_tokens(10_000, 0) == 4096
    assert clipped_new_tokens(500, 120) == 380
    assert clipped_new_tokens(100, 150) == 0


def _first_token_s(reservation: bool) -> list[float]:
    """Two 1,000-token prompts with max_tokens 4,096 (the simulator's client cap) on 8,000 KV tokens."""
    workload = [TraceRequest("a", 0.0, 1000, 300), TraceRequest("b", 0.001, 1000, 300)]
    engine = EngineConfig(kv_capacity_tokens=8000, prefill_order="policy", decode_reservation=reservation)
    config = ClusterConfig(engines=1, engine=engine, queue_factory=lambda: create_queue("fcfs"))
    result = simulate(workload, config, preset_model("qwen3-30b-a3b-h100"), create_dispatcher("round-robin", 1))
    return [result.engines[0].step_end_s[r.segments[0][0]] for r in result.requests]


def test_reservation_holds_back_a_request_whose_prompt_fits():
    """Without the reservation b starts while a decodes (its prompt fits). With it, a's 4,096
    max_tokens x 0.7 and b's own 1,000 + 4,096 exceed the 8,000 tokens: b waits for a to finish."""
    a_plain, b_plain = _first_token_s(False)
    a_res, b_res = _first_token_s(True)
    assert a_res == pytest.approx(a_plain)
    assert b_plain < 0.5
    assert b_res > 10 * b_plain  # after a's 300 tokens


def test_reservation_needs_sglang_step_forming():
    with pytest.raises(ValueError, match="decode_reservation"):
        EngineConfig(decode_reservation=True)
