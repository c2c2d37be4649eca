"""Job size: prefill and decode converted to seconds with the step model."""

import pytest

from request_sched.job_size import JobSizeEstimator
from request_sched.types import WaitingRequest


def _req(prompt=1024, cached=0, max_new=100, generated=0):
    return WaitingRequest("r", 0.0, prompt_tokens=prompt, max_new_tokens=max_new,
                          cached_tokens=cached, generated_tokens=generated)


def test_size_is_prefill_plus_output_times_marginal_decode(linear_model):
    est = JobSizeEstimator(linear_model, output_estimate="max_tokens",
                           reference_decode_seqs=32, reference_context_tokens=1024)
    m = linear_model
    decode_s = m.per_seq_s + m.per_kv_s * 1024
    assert est.decode_token_s == pytest.approx(decode_s)
    # 1024 uncached + 512 cached tokens: prefill compute on 1024, KV reads on all 1536
    prefill_s = m.per_prefill_s * 1024 + m.per_kv_s * 1536
    assert est.seconds(_req(prompt=1536, cached=512)) == pytest.approx(prefill_s + 100 * decode_s)


def test_preempted_request_recomputes_output_and_counts_remaining(linear_model):
    est = JobSizeEstimator(linear_model, output_estimate="max_tokens")
    fresh, preempted = _req(prompt=1024, max_new=100), _req(prompt=1024, max_new=100, generated=64)
    assert est.remaining_output_tokens(preempted) == 36
    assert est.prefill_seconds(preempted) > est.prefill_seconds(fresh)  # 64 generated tokens recomputed


def test_output_estimate_modes_and_bad_mode(linear_model):
    none = JobSizeEstimator(linear_model, output_estimate="none")
    assert none.seconds(_req()) == pytest.approx(none.prefill_seconds(_req()))
    pred = JobSizeEstimator(linear_model, output_estimate="predictor")
    assert pred.remaining_output_tokens(_req(max_new=4096)) == pred.predictor.prior_output_tokens
    with pytest.raises(ValueError, match="output_estimate"):
        JobSizeEstimator(linear_model, output_estimate="oracle")


def test_decode_weight_scales_only_the_decode_part(linear_model):
    full = JobSizeEstimator(linear_model, output_estimate="max_tokens")
    fifth = JobSizeEstimator(linear_model, output_estimate="max_tokens", decode_weight=0.2)
    r = _req(max_new=500)
    prefill = full.prefill_seconds(r)
    assert fifth.seconds(r) - prefill == pytest.approx(0.2 * (full.seconds(r) - prefill))
    with pytest.raises(ValueError, match="decode_weight"):
        JobSizeEstimator(linear_model, decode_weight=-1.0)
