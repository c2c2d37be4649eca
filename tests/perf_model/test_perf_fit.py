"""Fitting: NNLS recovers known coefficients; presets reproduce their public rows; coefficient files."""

import json

import numpy as np
import pytest

from perf_model.batch import BatchShape, MoeFactors
from perf_model.fit import StepSample, evaluate, fit_step_model, nnls
from perf_model.model_file import load_model, resolve_model, save_model
from perf_model.presets import PRESETS, QWEN3_30B_ITL_1XH100, preset_model
from perf_model.structural import ModelStructure, StepCoefficients, StructuralStepModel

STRUCTURE = ModelStructure(num_experts=8, top_k=2, dense_ridge_tokens=256, moe_ridge_tokens=1024)
TRUE = StepCoefficients(overhead_s=4e-3, per_token_s=2e-6, per_sequence_s=1e-4, dense_compute_s=5e-6,
                        kv_read_s=3e-8, attention_pair_s=1e-9, expert_load_s=2e-4, moe_compute_s=4e-6)


def _samples(model, n, rng, noise=0.0):
    samples = []
    for _ in range(n):
        prefill = int(rng.integers(0, 4096)) if rng.random() < 0.6 else 0
        decode = int(rng.integers(0, 128))
        if prefill + decode == 0:
            decode = 1
        batch = BatchShape(prefill_tokens=prefill, decode_seqs=decode,
                           kv_context_tokens=decode * int(rng.integers(10, 2000)) + prefill,
                           prefill_attention_pairs=prefill * (prefill + 1) / 2)
        samples.append(StepSample(batch, model.step_seconds(batch) * (1 + noise * rng.standard_normal())))
    return samples


def test_fit_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    truth = StructuralStepModel(STRUCTURE, TRUE)
    report = fit_step_model(_samples(truth, 300, rng), STRUCTURE)
    assert report.r2 > 0.999999 and report.mape < 1e-6
    for name in ("overhead_s", "per_sequence_s", "expert_load_s", "dense_compute_s"):
        assert getattr(report.model.coefficients, name) == pytest.approx(getattr(TRUE, name), rel=1e-4)
    assert "all_to_all_s" not in report.fitted  # no remote traffic in the rows: not identifiable


def test_prefill_step_cost_fitted_only_when_the_rows_identify_it():
    rng = np.random.default_rng(5)
    truth = StructuralStepModel(STRUCTURE, StepCoefficients(**{**TRUE.__dict__, "prefill_step_s": 0.05}))
    mixed = _samples(truth, 300, rng)  # decode-only and prefilling steps
    report = fit_step_model(mixed, STRUCTURE)
    assert "prefill_step_s" in report.fitted
    assert report.model.coefficients.prefill_step_s == pytest.approx(0.05, rel=1e-4)
    every_row_prefills = [s for s in mixed if s.batch.prefill_tokens > 0]  # the column equals overhead's
    report = fit_step_model(every_row_prefills, STRUCTURE)
    assert "prefill_step_s" not in report.fitted and report.model.coefficients.prefill_step_s == 0


def test_noisy_fit_reports_imperfect_quality():
    rng = np.random.default_rng(1)
    truth = StructuralStepModel(STRUCTURE, TRUE)
    report = fit_step_model(_samples(truth, 300, rng, noise=0.1), STRUCTURE)
    assert 0.5 < report.r2 < 0.9999 and 0.02 < report.mape < 0.2
    held_out = _samples(truth, 100, rng)
    r2, mape = evaluate(report.model, held_out)
    assert r2 > 0.95 and mape < 0.1


def test_nnls_is_nonnegative_and_optimal_on_a_small_case():
    a = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = np.array([1.0, -1.0, 0.0])
    x = nnls(a, b)
    assert (x >= 0).all()
    assert x == pytest.approx([1 / 2, 0.0])  # unconstrained optimum has x1 < 0


def test_fit_rejects_bad_rows():
    with pytest.raises(ValueError, match="at least 2"):
        fit_step_model([StepSample(BatchShape(decode_seqs=1), 0.01)], STRUCTURE)
    rows = [StepSample(BatchShape(decode_seqs=1), 0.01), StepSample(BatchShape(decode_seqs=2), 0.0)]
    with pytest.raises(ValueError, match="> 0"):
        fit_step_model(rows, STRUCTURE)
    with pytest.raises(ValueError, match="unknown coefficient"):
        fit_step_model(rows[:1] * 2, STRUCTURE, fixed=("nope",))


def test_h100_preset_reproduces_its_public_rows():
    report = PRESETS["qwen3-30b-a3b-h100"]()
    assert report.r2 > 0.99 and report.mape < 0.02
    model = report.model
    for batch, ms in QWEN3_30B_ITL_1XH100:
        predicted = model.step_seconds(BatchShape(decode_seqs=batch, kv_context_tokens=batch * 1024)) * 1e3
        assert predicted == pytest.approx(ms, rel=0.03)


def test_ep_preset_charges_remote_traffic():
    model = preset_model("qwen3-30b-a3b-2xh100-ep2")
    batch = BatchShape(decode_seqs=256, kv_context_tokens=256 * 1024)
    local = model.step_seconds(batch, MoeFactors(1.0, 0.0))
    remote = model.step_seconds(batch, MoeFactors(1.0, 0.5))
    assert remote - local == pytest.approx(256 * 8 * 0.5 * model.coefficients.all_to_all_s)


def test_model_file_round_trip_and_errors(tmp_path):
    model = preset_model("qwen3-30b-a3b-h100")
    path = save_model(tmp_path / "coef.json", model)
    loaded = load_model(path)
    assert loaded.coefficients == model.coefficients
    assert resolve_model(str(path)).structure == model.structure
    assert resolve_model("qwen3-30b-a3b-h100").coefficients == model.coefficients
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        load_model(tmp_path / "bad.json")
    (tmp_path / "wrong.json").write_text(json.dumps({"structure": {}, "coefficients": {"x_s": 1}}))
    with pytest.raises(ValueError, match="wrong.json"):
        load_model(tmp_path / "wrong.json")
    with pytest.raises(ValueError, match="expected a preset"):
        resolve_model("no-such-gpu")
