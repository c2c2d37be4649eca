"""Online refit: tracks a speed change within a stated number of steps, survives bad windows,
learns a different shape by slow refit, and exposes its one-step-ahead error."""

import dataclasses
import math

import numpy as np
import pytest

from perf_model.batch import BatchShape
from perf_model.online import OnlineRefitConfig, OnlineStepModel, PageHinkley
from perf_model.presets import preset_model
from perf_model.structural import ModelStructure, StepCoefficients, StructuralStepModel
from request_sched.token_budget import SloTokenBudget

#: steps after a x1.6 speed change within which the windowed MAPE must be back under 10%
RECOVERY_STEPS = 80


@pytest.fixture(scope="module")
def base() -> StructuralStepModel:
    return preset_model("qwen3-30b-a3b-h100")


def _batches(rng: np.random.Generator, n: int) -> list[BatchShape]:
    out = []
    for _ in range(n):
        prefill = int(rng.integers(0, 8192)) if rng.random() < 0.5 else 0
        decode = int(rng.integers(1, 128))
        out.append(BatchShape(prefill_tokens=prefill, decode_seqs=decode,
                              kv_context_tokens=decode * 1500 + prefill))
    return out


def _feed(model: OnlineStepModel, truth, batches, rng, factor=1.0, noise=0.03) -> list[float]:
    trace = []
    for b in batches:
        model.observe(b, truth.step_seconds(b) * factor * math.exp(noise * rng.standard_normal()))
        trace.append(model.mape)
    return trace


def test_recovers_from_speed_change_within_stated_steps(base):
    rng = np.random.default_rng(0)
    model = OnlineStepModel(base)
    before = _feed(model, base, _batches(rng, 600), rng)
    assert before[-1] < 0.05
    after = _feed(model, base, _batches(rng, 400), rng, factor=1.6)
    assert max(after[:RECOVERY_STEPS]) > before[-1]  # the change was felt
    assert all(m < 0.10 for m in after[RECOVERY_STEPS:])
    assert model.scale == pytest.approx(1.6, rel=0.1) or model.refits_accepted > 0
    assert model.drifts >= 1
    probe = BatchShape(prefill_tokens=2048, decode_seqs=32, kv_context_tokens=40_000)
    assert model.step_seconds(probe) == pytest.approx(1.6 * base.step_seconds(probe), rel=0.1)


def test_slow_refit_learns_a_different_shape(base):
    c = base.coefficients
    truth = StructuralStepModel(base.structure, dataclasses.replace(
        c, overhead_s=c.overhead_s * 1.5, per_sequence_s=c.per_sequence_s * 3,
        dense_compute_s=c.dense_compute_s * 0.6))
    rng = np.random.default_rng(1)
    model = OnlineStepModel(base)
    batches = _batches(rng, 1500)
    scale_only = OnlineStepModel(base, OnlineRefitConfig(refit_every=10**9))
    _feed(model, truth, batches, np.random.default_rng(2), noise=0.01)
    _feed(scale_only, truth, batches, np.random.default_rng(2), noise=0.01)
    assert model.refits_accepted >= 1
    assert model.mape < 0.03
    assert model.mape < scale_only.mape


def test_bad_window_cannot_wreck_the_model(base):
    rng = np.random.default_rng(3)
    model = OnlineStepModel(base)
    _feed(model, base, _batches(rng, 300), rng)
    for b in _batches(rng, 40):  # 40 wild steps: 50x too slow or 50x too fast
        model.observe(b, base.step_seconds(b) * (50.0 if rng.random() < 0.5 else 0.02))
        low, high = model.config.scale_bounds
        assert low <= model.scale <= high
    for name in ("overhead_s", "expert_load_s"):
        assert getattr(model.slow.coefficients, name) <= 10 * getattr(base.coefficients, name)
    after = _feed(model, base, _batches(rng, 300), rng)
    assert after[-1] < 0.10


def test_bad_times_are_counted_and_ignored(base):
    model = OnlineStepModel(base)
    batch = BatchShape(decode_seqs=8, kv_context_tokens=8000)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        model.observe(batch, bad)
    assert model.rejected == 4 and model.observed == 0 and model.scale == 1.0
    assert model.metrics()["rejected"] == 4


def test_mape_is_one_step_ahead_error(base):
    model = OnlineStepModel(base)
    batch = BatchShape(decode_seqs=8, kv_context_tokens=8000)
    predicted = model.step_seconds(batch)
    model.observe(batch, 2 * predicted)
    assert model.mape == pytest.approx(0.5)  # |p - 2p| / 2p, measured before learning


def test_page_hinkley_detects_shift_not_noise():
    rng = np.random.default_rng(4)
    test = PageHinkley(delta=0.03, threshold=1.5)
    assert not any(test.update(0.03 * rng.standard_normal()) for _ in range(5000))
    fired = [test.update(0.5 + 0.03 * rng.standard_normal()) for _ in range(20)]
    assert any(fired[:10])


@pytest.mark.parametrize("field, value", [("forgetting", 1.0), ("scale_bounds", (2.0, 3.0)),
                                          ("window", 4), ("min_refit_samples", 10_000),
                                          ("coefficient_clip", 1.0)])
def test_config_validation(field, value):
    with pytest.raises(ValueError, match=field):
        OnlineRefitConfig(**{field: value})


def test_slow_refit_learns_a_fixed_cost_of_prefilling_steps():
    """SGLang's CPU backend: decode-only steps ~11 ms, any step that prefills ~77 ms more. A base
    model without that term learns it, and the token budget priced by the model stops splitting."""
    shape = dict(overhead_s=0.005, per_token_s=2e-5, per_sequence_s=3e-4, kv_read_s=1e-7)
    base = StructuralStepModel(ModelStructure(), StepCoefficients(**shape))
    truth = StructuralStepModel(ModelStructure(), StepCoefficients(**shape, prefill_step_s=0.077))
    rng = np.random.default_rng(4)
    batches = [BatchShape(prefill_tokens=int(rng.integers(16, 512)) if rng.random() < 0.15 else 0,
                          decode_seqs=16, kv_context_tokens=int(rng.integers(4_000, 20_000)))
               for _ in range(1000)]
    model = OnlineStepModel(base)
    _feed(model, truth, batches, rng)
    assert model.refits_accepted > 0
    for probe in (BatchShape(decode_seqs=16, kv_context_tokens=16_000),
                  BatchShape(prefill_tokens=64, decode_seqs=16, kv_context_tokens=16_064)):
        assert model.step_seconds(probe) == pytest.approx(truth.step_seconds(probe), rel=0.15)
    frozen = SloTokenBudget(base, tpot_slo_s=0.03, max_budget=2048, min_budget=64)
    learnt = SloTokenBudget(model, tpot_slo_s=0.03, max_budget=2048, min_budget=64)
    assert frozen.budget(16, 16_000) < 2048 == learnt.budget(16, 16_000)
