"""SLO-aware prefill token budget: largest budget within the TPOT SLO, floor, no-decode case."""

import pytest
from hypothesis import given, settings, strategies as st

from perf_model.structural import ModelStructure, StepCoefficients, StructuralStepModel
from request_sched.token_budget import SloTokenBudget


def _mixed_step_model(prefill_step_s: float) -> StructuralStepModel:
    """Decode-only steps ~11 ms at 16 sequences; ``prefill_step_s`` more for any step that prefills."""
    return StructuralStepModel(ModelStructure(), StepCoefficients(
        overhead_s=0.005, prefill_step_s=prefill_step_s, per_token_s=2e-5, per_sequence_s=3e-4))


@settings(deadline=None)  # timing varies on a shared machine
@given(decode=st.integers(1, 256), kv=st.integers(0, 500_000), slo=st.floats(0.005, 0.5),
       granularity=st.sampled_from([1, 16, 64]))
def test_budget_is_the_largest_that_meets_the_slo(linear_model, decode, kv, slo, granularity):
    b = SloTokenBudget(linear_model, tpot_slo_s=slo, max_budget=8192, min_budget=0,
                       granularity=granularity)
    budget = b.budget(decode, kv)
    assert 0 <= budget <= 8192 and budget % granularity == 0 or budget == 8192
    if b.step_seconds(0, decode, kv) <= slo:
        assert b.step_seconds(budget, decode, kv) <= slo
        if budget < 8192:
            nxt = budget + granularity
            assert nxt > 8192 or b.step_seconds(nxt, decode, kv) > slo


def test_floor_and_no_decode(linear_model):
    b = SloTokenBudget(linear_model, tpot_slo_s=0.001, max_budget=4096, min_budget=256)
    assert b.budget(decode_seqs=64, kv_context_tokens=64_000) == 256  # decode alone breaks the SLO
    assert b.budget(decode_seqs=0, kv_context_tokens=0) == 4096
    loose = SloTokenBudget(linear_model, tpot_slo_s=10.0, max_budget=4096)
    assert loose.budget(decode_seqs=8, kv_context_tokens=8000) == 4096


def test_tighter_slo_means_smaller_budget(linear_model):
    budgets = [SloTokenBudget(linear_model, tpot_slo_s=s).budget(32, 32_000) for s in (0.03, 0.06, 0.2)]
    assert budgets == sorted(budgets) and budgets[0] < budgets[-1]


def test_bad_options(linear_model):
    with pytest.raises(ValueError, match="tpot_slo_s"):
        SloTokenBudget(linear_model, tpot_slo_s=0)
    with pytest.raises(ValueError, match="min_budget"):
        SloTokenBudget(linear_model, tpot_slo_s=0.05, min_budget=10, max_budget=5)


def test_stops_splitting_when_every_prefilling_step_breaks_the_slo():
    """A fixed 77 ms per prefilling step (SGLang's CPU backend) against a 30 ms SLO: small chunks only
    pay it more often, so the whole prefill limit is given; the decode-only step meets the SLO."""
    b = SloTokenBudget(_mixed_step_model(0.077), tpot_slo_s=0.03, max_budget=2048, min_budget=64)
    assert b.step_seconds(0, 16, 16_000) <= 0.03 < b.step_seconds(1, 16, 16_000)
    assert b.budget(decode_seqs=16, kv_context_tokens=16_000) == 2048


def test_a_fixed_cost_within_the_slo_still_bounds_the_budget():
    b = SloTokenBudget(_mixed_step_model(0.005), tpot_slo_s=0.03, max_budget=2048, min_budget=64)
    budget = b.budget(decode_seqs=16, kv_context_tokens=16_000)
    assert 64 <= budget < 2048
    assert b.step_seconds(budget, 16, 16_000) <= 0.03 < b.step_seconds(budget + 16, 16, 16_000)


@settings(deadline=None)
@given(prefill_step=st.floats(0.0, 0.2), decode=st.integers(0, 64), limit=st.integers(0, 8192),
       slo=st.floats(0.005, 0.2))
def test_budget_stays_within_the_hosts_limit(prefill_step, decode, limit, slo):
    b = SloTokenBudget(_mixed_step_model(prefill_step), tpot_slo_s=slo, max_budget=4096, min_budget=64)
    budget = b.budget(decode, decode * 1000, limit=limit)
    top = min(4096, limit)
    assert min(64, top) <= budget <= top or decode == 0 and budget == top
    if decode and b.step_seconds(budget, decode, decode * 1000) > slo:  # the SLO could not be kept
        assert budget in (min(64, top), top)
