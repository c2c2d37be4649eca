"""The structural step model: the distinct-experts term, the written-out prediction, placements."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perf_model.batch import BatchShape, MoeFactors
from perf_model.experts import distinct_experts, distinct_experts_array
from perf_model.presets import preset_model, preset_names
from perf_model.structural import (FEATURE_NAMES, ModelStructure, StepCoefficients,
                                   StructuralStepModel, step_features)


def test_distinct_experts_endpoints_and_monotone():
    assert distinct_experts(0, 128, 8) == 0.0
    assert distinct_experts(1, 128, 8) == pytest.approx(8.0)
    values = [distinct_experts(b, 128, 8) for b in range(0, 2000, 7)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert values[-1] == pytest.approx(128.0, rel=1e-6)
    assert distinct_experts(50, 0, 0) == 0.0
    tokens = np.array([0, 1, 5, 64, 1000])
    assert np.allclose(distinct_experts_array(tokens, 64, 8), [distinct_experts(t, 64, 8) for t in tokens])


batches = st.builds(BatchShape, st.integers(0, 20_000), st.integers(0, 20_000), st.integers(0, 1024),
                    st.integers(0, 2_000_000), st.sampled_from([0.0, 1e6, 3.3e7]))
factors = st.one_of(st.none(), st.builds(MoeFactors, st.floats(1.0, 8.0), st.floats(0.0, 1.0)))


@settings(max_examples=200, deadline=None)
@given(batch=batches, moe=factors, name=st.sampled_from(preset_names()))
def test_prediction_equals_coefficients_dot_features(batch, moe, name):
    model = preset_model(name)
    weights = [getattr(model.coefficients, n) for n in FEATURE_NAMES]
    expected = math.fsum(w * x for w, x in zip(weights, step_features(batch, moe, model.structure)))
    assert model.step_seconds(batch, moe) == pytest.approx(expected, rel=1e-12, abs=1e-15)


@settings(max_examples=100, deadline=None)
@given(batch=batches, imbalance=st.floats(1.0, 4.0), extra=st.floats(0.01, 3.0),
       remote=st.floats(0.0, 0.9), more=st.floats(0.01, 0.1))
def test_better_placement_gives_shorter_step(batch, imbalance, extra, remote, more):
    model = preset_model("qwen3-30b-a3b-2xh100-ep2")
    if batch.tokens == 0:
        return
    good = model.step_seconds(batch, MoeFactors(imbalance, remote))
    assert model.step_seconds(batch, MoeFactors(imbalance + extra, remote)) > good
    assert model.step_seconds(batch, MoeFactors(imbalance, remote + more)) > good


def test_steps_grow_with_work():
    model = preset_model("qwen3-30b-a3b-h100")
    base = model.step_seconds(BatchShape(decode_seqs=32, kv_context_tokens=32_000))
    assert model.step_seconds(BatchShape(decode_seqs=64, kv_context_tokens=64_000)) > base
    assert model.step_seconds(BatchShape(prefill_tokens=2048, decode_seqs=32,
                                         kv_context_tokens=34_048)) > base


def test_dict_round_trip_and_errors():
    model = preset_model("qwen3-30b-a3b-h100")
    again = StructuralStepModel.from_dict(model.to_dict())
    assert again.coefficients == model.coefficients and again.structure == model.structure
    dense = StructuralStepModel(ModelStructure(), StepCoefficients(overhead_s=0.01))
    assert StructuralStepModel.from_dict(dense.to_dict()).structure.dense_ridge_tokens == math.inf
    with pytest.raises(ValueError, match="coef.json.*overhead_s"):
        StructuralStepModel.from_dict({"structure": {}, "coefficients": {"overhead_s": -1}}, "coef.json")
    with pytest.raises(ValueError, match="coef.json.*unknown or missing"):
        StructuralStepModel.from_dict({"structure": {"experts": 3}, "coefficients": {}}, "coef.json")
    with pytest.raises(ValueError, match="coef.json"):
        StructuralStepModel.from_dict([], "coef.json")
    with pytest.raises(ValueError):
        ModelStructure(num_experts=8, top_k=9)
