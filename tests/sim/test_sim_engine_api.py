"""Public engine API (withdraw, cached_prefix_tokens), per-engine step models, per-request overhead."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine_dispatch.factory import create_dispatcher
from experiments.sim.cluster import simulate
from experiments.sim.config import ClusterConfig, EngineConfig
from experiments.sim.engine import SimEngine
from experiments.sim.request_state import SimRequest
from experiments.sim.results import run_result
from experiments.workloads.types import BLOCK_TOKENS, TraceRequest
from perf_model.batch import BatchShape, MoeFactors
from perf_model.request_overhead import RequestOverhead
from request_sched.policies import create_queue


class _Scaled:
    """A step model ``factor`` times another."""

    def __init__(self, inner, factor: float) -> None:
        self.inner, self.factor = inner, factor

    def step_seconds(self, batch: BatchShape, moe: MoeFactors | None = None) -> float:
        return self.factor * self.inner.step_seconds(batch, moe)


def _engine(step_model, **options) -> SimEngine:
    return SimEngine(0, EngineConfig(**options), create_queue("fcfs"), step_model, None, lambda r, t: None)


def test_withdraw_takes_a_waiting_request_out_of_queue_and_books(step_model):
    engine = _engine(step_model, max_running=1)
    a, b, c = (SimRequest(TraceRequest(x, 0.0, 700, 5)) for x in "abc")
    for req in (a, b, c):
        engine.enqueue(req, 0.0)
    engine.begin_step(0.0)  # admits a (max_running 1); b and c wait
    assert engine.load.pending_prefill_tokens == 1400
    assert engine.withdraw("a", 0.1) is None  # running, not waiting
    assert engine.withdraw("zzz", 0.1) is None
    assert engine.withdraw("b", 0.1) is b
    assert engine.withdraw("b", 0.1) is None  # exactly once
    assert list(engine.waiting) == ["c"] and len(engine.queue) == 1
    assert engine.load.waiting == 1 and engine.load.pending_prefill_tokens == 700 == engine.pending_prefill
    assert engine.queue.peek(0.1).request_id == "c"


def test_cached_prefix_tokens_counts_whole_cached_blocks_but_never_the_whole_prompt(step_model):
    engine = _engine(step_model)
    first = SimRequest(TraceRequest("a", 0.0, 3 * BLOCK_TOKENS, 1, (1, 2, 3)))
    engine.enqueue(first, 0.0)
    engine.end_step(engine.begin_step(0.0))  # prefill done: blocks 1, 2, 3 cached
    same_prompt = SimRequest(TraceRequest("b", 1.0, 3 * BLOCK_TOKENS, 1, (1, 2, 3)))
    longer = SimRequest(TraceRequest("c", 1.0, 4 * BLOCK_TOKENS + 5, 1, (1, 2, 9, 10)))
    assert engine.cached_prefix_tokens(same_prompt) == 2 * BLOCK_TOKENS  # one token is always computed
    assert engine.cached_prefix_tokens(longer) == 2 * BLOCK_TOKENS
    assert _engine(step_model, prefix_caching=False).cached_prefix_tokens(same_prompt) == 0


def test_per_engine_step_models_run_on_their_engines(step_model):
    workload = [TraceRequest(f"r{i}", 0.0, 200, 20) for i in range(4)]  # round robin: r0, r2 on engine 0
    config = ClusterConfig(engines=2, engine=EngineConfig(), queue_factory=lambda: create_queue("fcfs"),
                           step_models=[step_model, _Scaled(step_model, 3.0)])
    result = simulate(workload, config, step_model, create_dispatcher("round-robin", 2))
    tpot = {r.request_id: r.tpot_ms for r in run_result(result, "x", {}).requests}
    assert tpot["r1"] == pytest.approx(3 * tpot["r0"]) and tpot["r3"] == pytest.approx(3 * tpot["r2"])
    with pytest.raises(ValueError, match="step_models: expected one per engine"):
        ClusterConfig(engines=2, engine=EngineConfig(), queue_factory=lambda: create_queue("fcfs"),
                      step_models=[step_model])


@settings(max_examples=40, deadline=None)
@given(arrivals=st.lists(st.floats(0, 2), min_size=1, max_size=15), lengths=st.integers(1, 2500),
       enqueue=st.floats(0, 0.5), response=st.floats(0, 0.5), max_running=st.integers(1, 4))
def test_request_overhead_adds_to_ttft_and_e2e_and_leaves_tpot(step_model, arrivals, lengths, enqueue,
                                                                response, max_running):
    """One engine, constant overheads: every TTFT and E2E grows by exactly enqueue + response."""
    workload = [TraceRequest(f"r{i}", t, 1 + (lengths * (i + 1)) % 2500, 1 + (7 * i) % 40)
                for i, t in enumerate(sorted(arrivals))]

    def records(overhead: RequestOverhead):
        engine = EngineConfig(max_running=max_running, max_batched_tokens=1024, request_overhead=overhead)
        config = ClusterConfig(engines=1, engine=engine, queue_factory=lambda: create_queue("fcfs"))
        return run_result(simulate(workload, config, step_model, create_dispatcher("round-robin", 1)),
                          "x", {}).requests

    shift_ms = (enqueue + response) * 1e3
    for base, shifted in zip(records(RequestOverhead()), records(RequestOverhead(enqueue, response))):
        assert shifted.arrival_s == base.arrival_s
        assert shifted.ttft_ms == pytest.approx(base.ttft_ms + shift_ms, abs=1e-6)
        assert shifted.e2e_ms == pytest.approx(base.e2e_ms + shift_ms, abs=1e-6)
        assert (shifted.tpot_ms is None) == (base.tpot_ms is None)
        if base.tpot_ms is not None:
            assert shifted.tpot_ms == pytest.approx(base.tpot_ms, abs=1e-6)
