"""Bias-aware deadlines: eq. 8 as documented in request_sched.deadline, hand-checked."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perf_model.presets import preset_model
from request_sched.deadline import DeadlineEstimator, LatencySlo
from request_sched.job_size import JobSizeEstimator
from request_sched.predictor import OutputLengthPredictor
from request_sched.types import WaitingRequest

MODEL = preset_model("qwen3-30b-a3b-h100")


def _request(prompt=2048, arrival=5.0, max_new=512):
    return WaitingRequest("r", enqueue_s=arrival, prompt_tokens=prompt, max_new_tokens=max_new,
                          workload_class="code")


def test_ttft_deadline_charges_calibrated_prefill():
    job = JobSizeEstimator(MODEL)
    est = DeadlineEstimator(job, LatencySlo(ttft_s=1.0), step_error=lambda: 0.2)
    req = _request()
    d = est.deadline(req)
    prefill = job.prefill_seconds(req)
    assert d.ttft_due_s == pytest.approx(6.0)
    assert d.prefill_s == pytest.approx(1.2 * prefill)
    assert d.latest_start_s == pytest.approx(6.0 - 1.2 * prefill)
    assert est.slack_s(req, 5.5) == pytest.approx(d.latest_start_s - 5.5)


def test_e2e_deadline_uses_calibrated_output_length():
    predictor = OutputLengthPredictor(beta=1.0, prior_strength=0)
    for out in (10, 30, 10, 30):  # mean drifts, MAE > 0: calibration adds beta * MAE
        predictor.observe(_request(), out)
    job = JobSizeEstimator(MODEL, predictor=predictor)
    est = DeadlineEstimator(job, LatencySlo(ttft_s=1.0, e2e_s=2.0))
    req = _request()
    d = est.deadline(req)
    rest = predictor.predict_remaining(req)
    assert rest > predictor._levels["*"].mean  # eq. 7 pushed the estimate up
    assert d.output_tokens == pytest.approx(rest)
    e2e_latest = 5.0 + 2.0 - d.prefill_s - rest * est.token_s
    assert d.latest_start_s == pytest.approx(min(6.0 - d.prefill_s, e2e_latest))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 16_000), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_more_model_error_means_earlier_deadline(prompt, eps_low, extra):
    job = JobSizeEstimator(MODEL)
    slo = LatencySlo(ttft_s=0.5)
    low = DeadlineEstimator(job, slo, step_error=lambda: eps_low).deadline(_request(prompt))
    high = DeadlineEstimator(job, slo, step_error=lambda: eps_low + extra).deadline(_request(prompt))
    assert high.latest_start_s <= low.latest_start_s <= low.ttft_due_s


@pytest.mark.parametrize("ttft, e2e", [(0.0, None), (1.0, 0.5)])
def test_bad_slo(ttft, e2e):
    with pytest.raises(ValueError, match="slo"):
        LatencySlo(ttft_s=ttft, e2e_s=e2e)
