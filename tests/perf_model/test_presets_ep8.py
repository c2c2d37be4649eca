"""The EP8 preset (Qwen3-235B-A22B on 8 x H100): fit quality, roofline structure, streaming floor."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perf_model.batch import BatchShape, MoeFactors
from perf_model.presets import (DEPLOYMENTS, H100_ACHIEVED_BYTES_PER_S, H100_ACHIEVED_FLOPS, PRESETS,
                                QWEN3_235B_A22B, QWEN3_235B_ITL_8XH100_EP8, fit_preset, preset_model,
                                roofline_coefficients)

EP8 = "qwen3-235b-a22b-8xh100-ep8"


def test_ep8_preset_reproduces_its_public_rows():
    report = PRESETS[EP8]()
    assert report.r2 > 0.999 and report.mape < 0.01
    assert report.fitted == ("overhead_s", "per_sequence_s", "expert_load_s")
    default_placement = MoeFactors(imbalance=1.0, remote_fraction=7 / 8)
    for batch, ms in QWEN3_235B_ITL_8XH100_EP8:
        step = report.model.step_seconds(BatchShape(decode_seqs=batch, kv_context_tokens=batch * 1024),
                                         default_placement)
        assert step * 1e3 == pytest.approx(ms, rel=0.02)


def test_qwen3_235b_shape_matches_the_technical_report():
    assert QWEN3_235B_A22B.kv_bytes_per_token == 188 * 1024  # 94 layers x K,V x 4 heads x 128 x 2 B
    # active expert parameters per token: 94 x 8 x 3 x 4096 x 1536 = 14.2B of the 22B active
    assert QWEN3_235B_A22B.active_expert_params == pytest.approx(14.2e9, rel=0.01)


@pytest.mark.parametrize("gpus", [1, 2, 8])
def test_expert_ridge_does_not_grow_with_gpus(gpus):
    """Each expert lives on one GPU and sees T*k/E tokens from all GPUs: compute-bound at
    T = ridge * E / k whatever the GPU count; the replicated dense weights' ridge grows with it."""
    ridge = H100_ACHIEVED_FLOPS / H100_ACHIEVED_BYTES_PER_S
    structure, coefficients = roofline_coefficients(QWEN3_235B_A22B, gpus, H100_ACHIEVED_FLOPS,
                                                    H100_ACHIEVED_BYTES_PER_S, 155e9)
    assert structure.moe_ridge_tokens == pytest.approx(ridge * 128 / 8)
    assert structure.dense_ridge_tokens == pytest.approx(ridge * gpus)
    assert coefficients.moe_compute_s == pytest.approx(2 * QWEN3_235B_A22B.active_expert_params / H100_ACHIEVED_FLOPS / gpus)


def test_expert_stream_floor_is_the_hbm_roofline():
    # one expert: 3 x 4096 x 1536 BF16 weights = 37.7 MB per layer, 94 layers, 8 GPUs in parallel
    assert DEPLOYMENTS[EP8].expert_stream_floor_s() == pytest.approx(94 * 37.748736e6 / (3.0e12 * 8))
    # the rows were measured above the floor: the fitted per-expert cost holds imbalance + inefficiency
    assert preset_model(EP8).coefficients.expert_load_s > DEPLOYMENTS[EP8].expert_stream_floor_s()


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="expected one of"):
        fit_preset("no-such-gpu")


@settings(max_examples=100, deadline=None)
@given(decode=st.integers(1, 1024), prefill=st.integers(0, 8192), a=st.floats(1.0, 3.0), b=st.floats(1.0, 3.0))
def test_ep8_better_balance_never_slower(decode, prefill, a, b):
    model = preset_model(EP8)
    batch = BatchShape(prefill_tokens=prefill, decode_seqs=decode, kv_context_tokens=decode * 1024)
    low, high = sorted((a, b))
    assert model.step_seconds(batch, MoeFactors(low, 7 / 8)) <= model.step_seconds(batch, MoeFactors(high, 7 / 8))
