"""request_sched.headroom: the learnt clip on future output tokens at admission."""

import math

import pytest
from hypothesis import given, settings, strategies as st

from request_sched.headroom import LearntHeadroom


def test_ceiling_until_warmup_then_the_quantile_of_the_window():
    h = LearntHeadroom(quantile=0.9, window=100, warmup=10, floor_tokens=1, refresh_every=1)
    for i in range(9):
        h.observe(100)
        assert h.tokens == 4096
    assert h.observe(100) and h.tokens == 100
    for out in range(1, 101):  # the window now holds 1..100
        h.observe(out)
    assert h.tokens == 90


def test_floor_and_ceiling_bound_the_clip():
    low = LearntHeadroom(warmup=1, floor_tokens=64, refresh_every=1)
    low.observe(3)
    assert low.tokens == 64
    high = LearntHeadroom(warmup=1, ceiling_tokens=1000, refresh_every=1)
    high.observe(50_000)
    assert high.tokens == 1000


def test_recomputed_every_refresh_observations_after_warmup():
    h = LearntHeadroom(quantile=1.0, warmup=4, floor_tokens=1, refresh_every=4)
    results = [h.observe(10 * (i + 1)) for i in range(12)]
    assert results == [False, False, False, True, False, False, False, True, False, False, False, True]
    assert h.tokens == 120


@settings(deadline=None)
@given(outputs=st.lists(st.integers(0, 10_000), min_size=1, max_size=300),
       q=st.floats(0.01, 1.0), window=st.integers(1, 64))
def test_matches_a_brute_force_quantile(outputs, q, window):
    h = LearntHeadroom(quantile=q, window=window, warmup=1, floor_tokens=1, ceiling_tokens=10_000,
                       refresh_every=1)
    for out in outputs:
        h.observe(out)
    recent = sorted(outputs[-window:])
    expected = recent[min(len(recent) - 1, max(0, math.ceil(len(recent) * q) - 1))]
    assert h.tokens == max(1, expected)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="quantile"):
        LearntHeadroom(quantile=0)
    with pytest.raises(ValueError, match="floor_tokens"):
        LearntHeadroom(floor_tokens=10, ceiling_tokens=5)
    with pytest.raises(ValueError, match="window"):
        LearntHeadroom(window=0)
