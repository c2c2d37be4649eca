"""Per-request overhead: fitted as its own term (not smeared over steps), read and written with the model."""

import json

import numpy as np
import pytest

from perf_model.batch import BatchShape
from perf_model.fit import REQUEST_OVERHEAD, StepSample, evaluate, fit_step_model
from perf_model.model_file import load_model, load_request_overhead, resolve_request_overhead, save_model
from perf_model.request_overhead import RequestOverhead
from perf_model.samples_file import load_samples
from perf_model.structural import ModelStructure, StepCoefficients, StructuralStepModel

STRUCTURE = ModelStructure(dense_ridge_tokens=64)
TRUE = StepCoefficients(overhead_s=3e-3, per_sequence_s=4e-4, dense_compute_s=2e-5, kv_read_s=1e-7)
OVERHEAD_S = 0.08


def _sweep(noise: float = 0.0, seed: int = 0) -> list[StepSample]:
    """Decode steps timed inside streams, and lone requests' TTFTs (one prefill step + overhead)."""
    rng = np.random.default_rng(seed)
    truth = StructuralStepModel(STRUCTURE, TRUE)
    rows = []
    for b in (1, 2, 4, 8, 16, 32):
        batch = BatchShape(decode_seqs=b, kv_context_tokens=b * 200)
        rows.append(StepSample(batch, truth.step_seconds(batch) * (1 + noise * rng.standard_normal())))
    for p in (16, 256, 512, 1024, 1800):
        batch = BatchShape(prefill_tokens=p, kv_context_tokens=p)
        ttft = truth.step_seconds(batch) + OVERHEAD_S
        rows.append(StepSample(batch, ttft * (1 + noise * rng.standard_normal()), request_overheads=1))
    return rows


def test_fit_separates_the_request_overhead_from_the_step_overhead():
    report = fit_step_model(_sweep(), STRUCTURE)
    assert REQUEST_OVERHEAD in report.fitted
    assert report.request_overhead_s == pytest.approx(OVERHEAD_S, rel=1e-6)
    assert report.model.coefficients.overhead_s == pytest.approx(TRUE.overhead_s, rel=1e-6)
    assert report.r2 > 0.999999
    assert evaluate(report.model, _sweep(), report.request_overhead_s)[1] < 1e-6


def test_without_the_term_the_overhead_is_charged_to_every_prefill_step():
    rows = [StepSample(s.batch, s.seconds) for s in _sweep()]  # same times, overhead not declared
    report = fit_step_model(rows, STRUCTURE)
    assert report.request_overhead_s == 0 and REQUEST_OVERHEAD not in report.fitted
    chunk = BatchShape(prefill_tokens=512, decode_seqs=8, kv_context_tokens=2112)  # a step inside a stream
    truth = StructuralStepModel(STRUCTURE, TRUE).step_seconds(chunk)
    assert report.model.step_seconds(chunk) > truth + 0.5 * OVERHEAD_S


def test_a_fixed_request_overhead_is_kept_and_subtracted():
    report = fit_step_model(_sweep(), STRUCTURE, fixed=(REQUEST_OVERHEAD,), request_overhead_s=OVERHEAD_S)
    assert REQUEST_OVERHEAD not in report.fitted and report.request_overhead_s == OVERHEAD_S
    assert report.model.coefficients.overhead_s == pytest.approx(TRUE.overhead_s, rel=1e-6)


def test_noisy_sweep_still_recovers_the_overhead_roughly():
    report = fit_step_model(_sweep(noise=0.05, seed=3), STRUCTURE)
    assert report.request_overhead_s == pytest.approx(OVERHEAD_S, rel=0.15)


def test_samples_file_reads_request_overheads(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"decode_seqs": 2, "step_ms": 4}\n'
                    '{"prefill_tokens": 64, "request_overheads": 1, "step_ms": 90}\n')
    rows = load_samples(path)
    assert [r.request_overheads for r in rows] == [0, 1]
    path.write_text('{"prefill_tokens": 64, "request_overheads": 0.5, "step_ms": 90}\n')
    with pytest.raises(ValueError, match="rows.jsonl:1: field 'request_overheads': expected an integer"):
        load_samples(path)


def test_model_file_carries_the_request_overhead(tmp_path):
    model = StructuralStepModel(STRUCTURE, TRUE, name="x")
    path = save_model(tmp_path / "coef.json", model, request_overhead=RequestOverhead(0.05, 0.01))
    assert load_request_overhead(path) == RequestOverhead(0.05, 0.01)
    assert resolve_request_overhead(str(path)).total_s == pytest.approx(0.06)
    assert load_model(path).coefficients == TRUE
    plain = save_model(tmp_path / "plain.json", model)
    assert load_request_overhead(plain) == RequestOverhead()
    assert resolve_request_overhead("qwen3-30b-a3b-h100") == RequestOverhead()  # GPU presets: 0
    data = json.loads(path.read_text())
    data["request_overhead"] = {"enqueue_s": -1}
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="coef.json: request_overhead: enqueue_s must be"):
        load_request_overhead(path)
    data["request_overhead"] = {"queue_s": 1}
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="unknown field"):
        load_request_overhead(path)
