"""Synthetic generation (arrival statistics, prefixes, sessions) and workload transforms."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from experiments.workloads import (BLOCK_TOKENS, LengthDist, SyntheticSpec, TraceRequest, apply_transforms,
                                   clip_context, generate_synthetic, mean_rate, scale_to_rate, window)


def gaps(reqs):
    return np.diff([r.arrival_s for r in reqs])


@pytest.mark.parametrize("arrival, cv", [("poisson", 1.0), ("gamma", 0.5), ("gamma", 3.0)])
def test_arrival_rate_and_cv(arrival, cv):
    reqs = generate_synthetic(SyntheticSpec(num_requests=20000, rate_rps=8.0, arrival=arrival, arrival_cv=cv), seed=3)
    g = gaps(reqs)
    assert g.mean() == pytest.approx(1 / 8.0, rel=0.05)
    assert g.std() / g.mean() == pytest.approx(cv, rel=0.08)


def test_length_distributions_mean_cv_and_bounds():
    rng = np.random.default_rng(0)
    for kind in ("uniform", "lognormal"):
        x = LengthDist(kind, mean=500, cv=0.4).sample(rng, 50000)
        assert x.mean() == pytest.approx(500, rel=0.02) and x.std() / x.mean() == pytest.approx(0.4, rel=0.05)
    x = LengthDist("lognormal", mean=500, cv=2.0, minimum=10, maximum=900).sample(rng, 5000)
    assert x.min() >= 10 and x.max() <= 900
    assert set(LengthDist("fixed", mean=77).sample(rng, 10)) == {77}
    with pytest.raises(ValueError, match="length kind"):
        LengthDist("zipf")


def test_same_seed_same_workload_other_seed_differs():
    spec = SyntheticSpec(num_requests=50, input=LengthDist("lognormal", 300, 1.0))
    assert generate_synthetic(spec, 1) == generate_synthetic(spec, 1)
    assert generate_synthetic(spec, 1) != generate_synthetic(spec, 2)


def test_prefix_groups_share_blocks():
    spec = SyntheticSpec(num_requests=200, prefix_groups=3, prefix_tokens=1100, input=LengthDist("fixed", 50))
    reqs = generate_synthetic(spec, 0)
    groups = {r.prefix_blocks for r in reqs}
    assert len(groups) == 3 and all(len(g) == 2 for g in groups)
    assert all(r.input_tokens == 1150 for r in reqs)


def test_sessions_grow_context_and_share_previous_turns():
    spec = SyntheticSpec(num_requests=300, sessions=4, input=LengthDist("fixed", 300), output=LengthDist("fixed", 100),
                         max_context_tokens=4000)
    reqs = generate_synthetic(spec, 0)
    by_session: dict[str, list[TraceRequest]] = {}
    for r in reqs:
        by_session.setdefault(r.session_id, []).append(r)
    assert len(by_session) > 4  # sessions restart when their context would exceed 4000 tokens
    for turns in by_session.values():
        for prev, nxt in zip(turns, turns[1:]):
            assert nxt.input_tokens == prev.input_tokens + prev.output_tokens + 300
            assert nxt.prefix_blocks[: len(prev.prefix_blocks)] == prev.prefix_blocks
            assert len(nxt.prefix_blocks) == (prev.input_tokens + prev.output_tokens) // BLOCK_TOKENS
        assert turns[-1].input_tokens + turns[-1].output_tokens <= 4000


def test_window_cap_rate_order():
    reqs = [TraceRequest(f"r{i}", float(i), 10, 5) for i in range(100)]
    out = apply_transforms(reqs, start_s=10, duration_s=50, max_requests=20, rate_rps=2.0)
    assert [r.request_id for r in out] == [f"r{i}" for i in range(10, 30)]
    assert out[0].arrival_s == 0 and out[-1].arrival_s == pytest.approx(19 / 2.0)
    assert window(reqs, 95)[0].arrival_s == 0.0
    with pytest.raises(ValueError, match="no request arrives"):
        apply_transforms(reqs, start_s=1000)
    with pytest.raises(ValueError, match="same instant"):
        scale_to_rate([TraceRequest("a", 0, 1, 1), TraceRequest("b", 0, 1, 1)], 1.0)


def test_clip_context_drops_blocks_beyond_input():
    r = TraceRequest("a", 0.0, 3000, 500, prefix_blocks=(1, 2, 3, 4, 5))
    (c,) = clip_context([r], 2048)
    assert (c.input_tokens, c.output_tokens, c.prefix_blocks) == (1548, 500, (1, 2, 3))
    (d,) = clip_context([TraceRequest("b", 0.0, 10, 5000)], 2048)
    assert (d.input_tokens, d.output_tokens) == (1, 2047)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 10**7), min_size=2, max_size=50, unique=True), st.floats(0.01, 100))
def test_scale_to_rate_hits_rate_and_keeps_order(times_ms, rate):
    reqs = [TraceRequest(f"r{i}", t / 1000, 1, 1) for i, t in enumerate(sorted(times_ms))]
    out = scale_to_rate(reqs, rate)
    assert mean_rate(out) == pytest.approx(rate, rel=1e-6)
    assert [r.request_id for r in out] == [r.request_id for r in reqs]
    assert all(a.arrival_s <= b.arrival_s for a, b in zip(out, out[1:]))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 8000), st.integers(1, 8000), st.integers(2, 4096))
def test_clip_context_fits_and_keeps_block_invariant(inp, out, limit):
    r = TraceRequest("a", 0.0, inp, out, prefix_blocks=tuple(range(inp // BLOCK_TOKENS)))
    (c,) = clip_context([r], limit)
    assert c.input_tokens + c.output_tokens <= limit
    assert c.input_tokens >= 1 and c.output_tokens >= 1
    assert len(c.prefix_blocks) * BLOCK_TOKENS <= c.input_tokens
