"""Output-length predictor: per-class EMA, back-off, GAPS calibration, caps, preempted requests."""

import pytest
from hypothesis import given, settings, strategies as st

from request_sched.predictor import OutputLengthPredictor, prompt_bucket
from request_sched.types import WaitingRequest


def _req(prompt=100, max_new=10_000, tag=None, generated=0):
    return WaitingRequest("r", 0.0, prompt_tokens=prompt, max_new_tokens=max_new,
                          workload_class=tag, generated_tokens=generated)


def test_prior_then_levels_shrunk_towards_their_parents():
    p = OutputLengthPredictor(beta=0.0, prior_strength=2, prior_output_tokens=300)
    assert p.predict_total(_req()) == 300
    p.observe(_req(tag="code"), 10)
    # every level has 1 sample of 10: global (1*10 + 2*300)/3, then each level again 1:2
    glob = (10 + 2 * 300) / 3
    tag = (10 + 2 * glob) / 3
    assert p.predict_total(_req(tag="code")) == pytest.approx((10 + 2 * tag) / 3)
    p.observe(_req(tag="code"), 30)
    for _ in range(2):
        p.observe(_req(tag="conv"), 400)
    # with 2 samples of (10, 30) the class mean is 20 and weighs 2 / (2 + 2) against its parent
    assert p.predict_total(_req(tag="code")) < p.predict_total(_req(tag="conv"))


def test_few_samples_of_a_class_already_separate_it():
    """Three finished long requests among many short ones move the long class most of the way."""
    p = OutputLengthPredictor(beta=0.0)
    for i in range(40):
        p.observe(_req(prompt=64 + i), 10)
    for _ in range(3):
        p.observe(_req(prompt=1500), 40)
    short, long = p.predict_total(_req(prompt=80)), p.predict_total(_req(prompt=1600))
    assert short == pytest.approx(10, abs=2)
    assert long > 2 * short


def test_first_samples_weigh_equally():
    p = OutputLengthPredictor(ema_alpha=0.05, beta=0.0, prior_strength=0)
    for o in (100, 200, 300):
        p.observe(_req(), o)
    assert p.predict_total(_req()) == pytest.approx(200)


def test_gaps_calibration_formula():
    p = OutputLengthPredictor(ema_alpha=0.5, beta=2.0, gamma=1.0, prior_strength=0)
    p.observe(_req(), 100)   # mean 100
    p.observe(_req(), 50)    # err 50: mae 50, mape 50/50 = 1 (first error), mean 75
    assert p.predict_total(_req()) == pytest.approx(75 + 2.0 * 50 + 1.0 * 75 * 1.0)


def test_prompt_buckets_separate_lengths():
    p = OutputLengthPredictor(prior_strength=0)
    for _ in range(3):
        p.observe(_req(prompt=100), 10)
        p.observe(_req(prompt=5000), 900)
    assert prompt_bucket(100) != prompt_bucket(5000)
    assert p.predict_total(_req(prompt=120)) < p.predict_total(_req(prompt=6000))


@settings(deadline=None)  # timing varies on a shared machine
@given(
    outputs=st.lists(st.integers(1, 5000), min_size=1, max_size=30),
    max_new=st.integers(1, 5000),
    generated=st.integers(0, 5000),
    beta=st.floats(0, 3),
    gamma=st.floats(0, 3),
)
def test_predictions_respect_caps(outputs, max_new, generated, beta, gamma):
    p = OutputLengthPredictor(beta=beta, gamma=gamma, prior_strength=0)
    for o in outputs:
        p.observe(_req(), o)
    total = p.predict_total(_req(max_new=max_new))
    assert 1 <= total <= max_new
    generated = min(generated, max_new)
    remaining = p.predict_remaining(_req(max_new=max_new, generated=generated))
    assert 0 <= remaining <= max_new - generated


def test_remaining_counts_from_where_a_preempted_request_stopped():
    p = OutputLengthPredictor(prior_strength=0)
    for _ in range(5):
        p.observe(_req(), 200)
    assert p.predict_remaining(_req(generated=50)) == pytest.approx(150)
    # past half the estimate: assume it runs as long again (continuous at g = 100)
    assert p.predict_remaining(_req(generated=100)) == pytest.approx(100)
    assert p.predict_remaining(_req(generated=300)) == pytest.approx(300)
    assert p.predict_remaining(_req(generated=300, max_new=350)) == pytest.approx(50)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="ema_alpha"):
        OutputLengthPredictor(ema_alpha=0)
    with pytest.raises(ValueError, match="beta"):
        OutputLengthPredictor(beta=-1)


def test_uncapped_predictions_ignore_max_tokens():
    """With cap_by_max_tokens=False a short max_tokens (the true length in a replay) is no oracle."""
    capped = OutputLengthPredictor(prior_strength=0)
    uncapped = OutputLengthPredictor(prior_strength=0, cap_by_max_tokens=False)
    for p in (capped, uncapped):
        for _ in range(5):
            p.observe(_req(), 200)
    assert capped.predict_total(_req(max_new=8)) == 8
    assert uncapped.predict_total(_req(max_new=8)) == pytest.approx(200)
    assert uncapped.predict_remaining(_req(max_new=8, generated=50)) == pytest.approx(150)
    assert capped.predict_remaining(_req(max_new=60, generated=50)) == pytest.approx(10)
