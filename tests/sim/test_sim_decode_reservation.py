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


def _first_token_s(reservation: bool, learnt_headroom: bool = False,
                   workload: list[TraceRequest] | None = None) -> list[float]:
    """Two 1,000-token prompts with max_tokens 4,096 (the simulator's client cap) on 8,000 KV tokens."""
    workload = workload or [TraceRequest("a", 0.0, 1000, 300), TraceRequest("b", 0.001, 1000, 300)]
    engine = EngineConfig(kv_capacity_tokens=8000, prefill_order="policy", decode_reservation=reservation,
                          learnt_headroom=learnt_headroom)
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


def test_learnt_headroom_admits_once_outputs_are_known():
    """64 short requests (10 output tokens) finish first and teach the headroom a clip of 64 (its
    floor); then b fits beside a (1,000 + 64 + a's 0.7 x 64, well under 8,000), as without any
    reservation, while with SGLang's 4,096 clip it waits for a as above."""
    warm = [TraceRequest(f"w{i}", 0.001 * i, 16, 10) for i in range(64)]
    late = [TraceRequest("a", 5.0, 1000, 300), TraceRequest("b", 5.001, 1000, 300)]
    *_, a_stock, b_stock = _first_token_s(True, workload=warm + late)
    *_, a_learnt, b_learnt = _first_token_s(True, learnt_headroom=True, workload=warm + late)
    assert b_stock - a_stock > 1.0 and b_learnt - a_learnt < 0.5


def test_reservation_needs_sglang_step_forming():
    with pytest.raises(ValueError, match="decode_reservation"):
        EngineConfig(decode_reservation=True)
    with pytest.raises(ValueError, match="learnt_headroom"):
        EngineConfig(prefill_order="policy", learnt_headroom=True)
