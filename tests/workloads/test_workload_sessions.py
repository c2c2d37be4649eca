"""experiments.workloads.sessions: the imposed conversation model keeps the trace's arrivals and
per-turn tokens, grows prompts by the history, shares exactly the history's blocks, is causal."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.workloads.sessions import SessionSpec, add_sessions
from experiments.workloads.types import BLOCK_TOKENS, TraceRequest


@st.composite
def rows(draw):
    n = draw(st.integers(1, 60))
    gaps = draw(st.lists(st.floats(0, 20), min_size=n, max_size=n))
    t, out = 0.0, []
    for i, gap in enumerate(gaps):
        t += gap
        out.append(TraceRequest(f"r{i}", t, draw(st.integers(1, 3000)), draw(st.integers(1, 800))))
    return out


specs = st.builds(SessionSpec, mean_turns=st.floats(1, 6), think_time_s=st.floats(0, 40),
                  max_context_tokens=st.one_of(st.none(), st.integers(2, 20_000)), seed=st.integers(0, 5))


@settings(max_examples=150, deadline=None)
@given(rows(), specs)
def test_sessions_invariants(requests, spec):
    result = add_sessions(requests, spec)
    assert [(r.request_id, r.arrival_s, r.output_tokens) for r in result] == \
        [(r.request_id, r.arrival_s, r.output_tokens) for r in requests]
    turns = defaultdict(list)
    for original, turn in zip(requests, result):
        assert len(turn.prefix_blocks) == turn.input_tokens // BLOCK_TOKENS
        turns[turn.session_id].append((original, turn))
    owner = {}
    for session, members in turns.items():
        (first_in, first_out) = members[0]
        assert first_out.input_tokens == first_in.input_tokens  # a session starts with no history
        for (_, prev), (orig, cur) in zip(members, members[1:]):
            assert cur.input_tokens == prev.input_tokens + prev.output_tokens + orig.input_tokens
            assert cur.prefix_blocks[:len(prev.prefix_blocks)] == prev.prefix_blocks
            if spec.max_context_tokens is not None:
                assert cur.input_tokens + cur.output_tokens <= spec.max_context_tokens
        for _, turn in members:
            for block in turn.prefix_blocks:
                assert owner.setdefault(block, session) == session  # sessions share no block


@settings(max_examples=60, deadline=None)
@given(rows(), specs, st.integers(1, 60))
def test_sessions_are_causal(requests, spec, n):
    assert add_sessions(requests[:n], spec) == add_sessions(requests, spec)[:n]


def test_one_turn_sessions_keep_prompts():
    requests = [TraceRequest(f"r{i}", float(i), 1000 + i, 10) for i in range(20)]
    result = add_sessions(requests, SessionSpec(mean_turns=1.0))
    assert [r.input_tokens for r in result] == [r.input_tokens for r in requests]
    assert len({r.session_id for r in result}) == 20


def _mean_turn_gap(think_time_s: float) -> tuple[float, int]:
    """Mean gap (s) between consecutive turns of a session and the session count, 1 row per second."""
    requests = [TraceRequest(f"r{i}", float(i), 600, 10) for i in range(400)]
    result = add_sessions(requests, SessionSpec(mean_turns=5.0, think_time_s=think_time_s, max_context_tokens=None))
    arrivals = defaultdict(list)
    for r in result:
        arrivals[r.session_id].append(r.arrival_s)
    gaps = [b - a for times in arrivals.values() for a, b in zip(times, times[1:])]
    return sum(gaps) / len(gaps), len(arrivals)


def test_think_time_separates_turns():
    no_think, sessions = _mean_turn_gap(0.0)
    assert no_think == 1.0 and sessions < 400 / 5 * 1.5  # the next row continues a ready session
    thinking, sessions = _mean_turn_gap(20.0)
    assert thinking >= 0.8 * 20.0  # a turn never comes before its think time has passed
    assert 400 / 5 * 0.5 < sessions < 400 / 5 * 1.5  # about one session start per mean_turns rows


@pytest.mark.parametrize("kwargs", [{"mean_turns": 0.5}, {"think_time_s": -1.0}, {"max_context_tokens": 1},
                                    {"mean_turns": float("nan")}])
def test_bad_spec_is_refused(kwargs):
    with pytest.raises(ValueError, match="sessions: "):
        SessionSpec(**kwargs)


def test_unsorted_input_is_refused():
    with pytest.raises(ValueError, match="sorted by arrival_s"):
        add_sessions([TraceRequest("a", 2.0, 10, 1), TraceRequest("b", 1.0, 10, 1)])
