"""request_sched.preemption: which running requests a waiting one may preempt."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from request_sched.predictor import OutputLengthPredictor
from request_sched.preemption import PreemptionRule, RunningJob
from request_sched.types import WaitingRequest

SHORT_PROMPT, LONG_PROMPT = 64, 1500


def trained_predictor() -> OutputLengthPredictor:
    """Learnt: short prompts answer with 10 tokens, long prompts with 40 (uncapped, classes alone)."""
    predictor = OutputLengthPredictor(cap_by_max_tokens=False, prior_strength=0)
    for i in range(20):
        predictor.observe(WaitingRequest(f"s{i}", 0.0, SHORT_PROMPT, 512), 10)
        predictor.observe(WaitingRequest(f"l{i}", 0.0, LONG_PROMPT, 512), 40)
    return predictor


def req(rid: str, prompt: int, generated: int = 0) -> WaitingRequest:
    return WaitingRequest(rid, 0.0, prompt, 512, generated_tokens=generated)


def test_short_candidate_preempts_long_running_with_most_left_first() -> None:
    rule = PreemptionRule(trained_predictor(), size_ratio=2.0, overdue_s=60.0)
    running = [RunningJob(req("a", SHORT_PROMPT)),                # ~10 left: not >= 2 x 11
               RunningJob(req("b", LONG_PROMPT, generated=2)),   # ~38 left
               RunningJob(req("c", SHORT_PROMPT, generated=1)),  # ~9 left
               RunningJob(req("d", LONG_PROMPT, generated=10))]  # ~30 left
    steps = rule.candidate_steps(req("x", SHORT_PROMPT))
    assert 2 * steps <= rule.remaining_steps(running[3].request)
    assert rule.victims(req("x", SHORT_PROMPT), 1.0, running) == [1, 3]


def test_a_request_past_its_estimate_counts_as_finishing() -> None:
    rule = PreemptionRule(trained_predictor(), size_ratio=2.0)
    assert rule.remaining_steps(req("l", LONG_PROMPT, generated=39)) == pytest.approx(1.0)
    assert rule.remaining_steps(req("l", LONG_PROMPT, generated=60)) == 0.0
    assert rule.victims(req("x", SHORT_PROMPT), 1.0, [RunningJob(req("l", LONG_PROMPT, 60))]) == []


def test_long_candidate_preempts_nobody_until_overdue_and_never_an_overdue_request() -> None:
    rule = PreemptionRule(trained_predictor(), size_ratio=2.0, overdue_s=60.0)
    running = [RunningJob(req("s", SHORT_PROMPT), waited_s=2.0),
               RunningJob(req("l", LONG_PROMPT, 5), waited_s=30.0),
               RunningJob(req("overdue", LONG_PROMPT, 0), waited_s=61.0)]
    assert rule.victims(req("x", LONG_PROMPT), 59.0, running) == []
    assert rule.victims(req("x", LONG_PROMPT), 61.0, running) == [1, 0]
    assert rule.victims(req("x", SHORT_PROMPT), 1.0, running) == [1]  # "overdue": 40 left, protected
    no_overdue = PreemptionRule(trained_predictor(), 2.0, 60.0, overdue_preempts=False)
    assert no_overdue.victims(req("x", LONG_PROMPT), 1e6, running) == []


def test_preempted_requests_are_protected_after_max_preemptions() -> None:
    rule = PreemptionRule(trained_predictor(), size_ratio=2.0, overdue_s=1.0, max_preemptions=1)
    running = [RunningJob(req("a", LONG_PROMPT), waited_s=0.5, preemptions=1),
               RunningJob(req("b", LONG_PROMPT), waited_s=0.5, preemptions=0)]
    assert rule.victims(req("x", SHORT_PROMPT), 5.0, running) == [1]
    off = PreemptionRule(trained_predictor(), max_preemptions=0, overdue_s=1.0)
    assert off.victims(req("x", SHORT_PROMPT), 5.0, running) == []


@pytest.mark.parametrize("kwargs, message", [
    ({"size_ratio": 1.0}, "size_ratio must be > 1"),
    ({"overdue_s": 0.0}, "overdue_s must be > 0"),
    ({"max_preemptions": -1}, "max_preemptions must be >= 0"),
])
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PreemptionRule(OutputLengthPredictor(), **kwargs)


running_jobs = st.lists(
    st.builds(lambda prompt, generated, preempted, waited: RunningJob(
                  req("r", prompt, generated), waited, preempted),
              st.sampled_from([SHORT_PROMPT, LONG_PROMPT]), st.integers(0, 80), st.integers(0, 3),
              st.floats(0, 120)),
    max_size=12)


@given(running=running_jobs, prompt=st.sampled_from([SHORT_PROMPT, LONG_PROMPT]),
       waited=st.floats(0, 200), ratio=st.floats(1.01, 20), max_preemptions=st.integers(0, 3))
def test_victims_are_eligible_distinct_and_sorted(running: list[RunningJob], prompt: int,
                                                  waited: float, ratio: float,
                                                  max_preemptions: int) -> None:
    rule = PreemptionRule(trained_predictor(), ratio, 60.0, max_preemptions)
    candidate = req("x", prompt)
    victims = rule.victims(candidate, waited, running)
    assert len(set(victims)) == len(victims)
    left = [rule.remaining_steps(running[i].request) for i in victims]
    assert left == sorted(left, reverse=True)
    for i, job in enumerate(running):
        eligible = job.preemptions < max_preemptions and job.waited_s <= 60.0 and (
            waited > 60.0 or rule.remaining_steps(job.request) >= ratio * rule.candidate_steps(candidate))
        assert (i in victims) == eligible


def test_infinite_bound_never_counts_as_overdue() -> None:
    rule = PreemptionRule(trained_predictor(), overdue_s=math.inf)
    assert not rule.is_overdue(1e12)
