"""Mechanics of the simulated engines: KV accounting, prefix hits, preemption, determinism, ITL."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine_dispatch.types import EngineLoad
from experiments.metrics.summary import PERCENTILES
from experiments.sim.cluster import _Loads, simulate
from experiments.sim.config import ClusterConfig, EngineConfig
from experiments.sim.engine import SimEngine
from experiments.sim.results import pooled_itl_stats, run_result, token_times
from experiments.workloads.synthetic import LengthDist, SyntheticSpec, generate_synthetic
from experiments.workloads.types import BLOCK_TOKENS, TraceRequest
from perf_model.batch import MoeFactors
from perf_model.presets import preset_model
from request_sched.policies import create_queue
from engine_dispatch.factory import create_dispatcher


def _check_engine(engine: SimEngine) -> None:
    assert 0 <= engine.kv_used <= engine.capacity
    assert engine.own_tokens >= 0 and engine.decode_kv >= 0 and engine.pending_prefill >= 0
    assert 0 <= engine.cache.evictable_blocks <= engine.cache.blocks
    decoding = [r for r in engine.running.values() if r.decode_from_step >= 0]
    assert engine.decode_seqs == len(decoding)
    assert len(engine.running) <= engine.config.max_running


@pytest.fixture
def checked_engines(monkeypatch):
    """Check the KV invariants after every begin_step and end_step of every engine."""
    begin, end = SimEngine.begin_step, SimEngine.end_step

    def checked_begin(self, now):
        out = begin(self, now)
        _check_engine(self)
        return out

    def checked_end(self, now):
        end(self, now)
        _check_engine(self)

    monkeypatch.setattr(SimEngine, "begin_step", checked_begin)
    monkeypatch.setattr(SimEngine, "end_step", checked_end)


#: step-forming modes: vLLM V1, stock SGLang, SGLang mixed chunk, both with SGLang's decode
#: reservation, and mixed chunk with the reservation clipped by the learnt headroom
STEP_MODES = [{"prefill_order": "admission"}, {"prefill_order": "policy"},
              {"prefill_order": "policy", "mixed_chunk": True},
              {"prefill_order": "policy", "mixed_chunk": True, "decode_reservation": True},
              {"prefill_order": "policy", "decode_reservation": True},
              {"prefill_order": "policy", "mixed_chunk": True, "decode_reservation": True,
               "learnt_headroom": True}]


@st.composite
def workloads(draw):
    n = draw(st.integers(1, 25))
    arrivals = sorted(draw(st.lists(st.floats(0, 3), min_size=n, max_size=n)))
    out = []
    for i, arrival in enumerate(arrivals):
        inp = draw(st.integers(1, 3000))
        group = draw(st.sampled_from([None, 0, 1, 2]))
        blocks = () if group is None else tuple(100 * group + j for j in range(inp // BLOCK_TOKENS))
        out.append(TraceRequest(f"r{i}", arrival, inp, draw(st.integers(1, 300)), blocks))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(workload=workloads(), capacity=st.integers(600, 6_000), max_running=st.integers(1, 16),
       budget=st.integers(16, 4096), whole=st.booleans(), engines=st.integers(1, 3),
       policy=st.sampled_from(["fcfs", "lpm", "sjf-aging"]), mode=st.sampled_from(STEP_MODES))
def test_kv_accounting_stays_in_bounds_and_no_request_is_lost(
        checked_engines, run_sim, step_model, workload, capacity, max_running, budget, whole, engines, policy, mode):
    result = run_sim(workload, step_model, engines=engines, policy=policy, kv_capacity_tokens=capacity,
                     max_running=max_running, max_batched_tokens=budget, admit_whole_prompt=whole, **mode)
    assert len(result.requests) == len(workload)
    for req in result.requests:
        too_long = req.trace.input_tokens + req.trace.output_tokens > capacity
        assert req.failed == too_long and req.finished != too_long
        if req.finished:
            times = token_times(req, result.engines[req.engine_id])
            assert len(times) == req.trace.output_tokens
            assert times[0] > req.trace.arrival_s and np.all(np.diff(times) > 0)
    for engine in result.engines:  # drained: no KV held outside the cache, nothing pinned
        assert engine.own_tokens == 0 and engine.decode_kv == 0 and engine.decode_seqs == 0
        assert not engine.running and not engine.waiting
        assert engine.cache.evictable_blocks == engine.cache.blocks


def test_prefix_hits_match_an_independent_count(run_sim, step_model):
    rng = np.random.default_rng(7)
    workload, seen = [], []
    expected = 0
    for i in range(60):
        inp = int(rng.integers(1, 6 * BLOCK_TOKENS))
        group = int(rng.integers(0, 4))
        depth = inp // BLOCK_TOKENS
        blocks = tuple(1000 * group + (j if j < 2 else 10 * i + j) for j in range(depth))  # 2 shared blocks
        lcp = max((next((k for k, (a, b) in enumerate(zip(blocks, prev)) if a != b), min(len(blocks), len(prev)))
                   for prev in seen), default=0)
        expected += BLOCK_TOKENS * min(lcp, (inp - 1) // BLOCK_TOKENS)
        seen.append(blocks)
        workload.append(TraceRequest(f"r{i}", 100.0 * i, inp, 4, blocks))  # each ends before the next
    result = run_sim(workload, step_model, kv_capacity_tokens=10**7)
    assert expected > 0
    assert sum(r.hit_tokens for r in result.requests) == expected


def test_prefix_cache_off_means_no_hits(run_sim, step_model):
    workload = [TraceRequest(f"r{i}", 10.0 * i, 2048, 4, (1, 2, 3, 4)) for i in range(5)]
    assert sum(r.hit_tokens for r in run_sim(workload, step_model).requests) == 4 * 3 * BLOCK_TOKENS
    assert sum(r.hit_tokens for r in run_sim(workload, step_model, prefix_caching=False).requests) == 0


def test_preempted_requests_finish_with_all_their_tokens(checked_engines, run_sim, step_model):
    workload = [TraceRequest(f"r{i}", 0.0, 400, 600) for i in range(6)]
    result = run_sim(workload, step_model, kv_capacity_tokens=3000)
    assert result.preemptions > 0
    assert any(r.preemptions for r in result.requests)
    for req in result.requests:
        assert req.finished
        assert len(token_times(req, result.engines[0])) == 600


def _records(result):
    return [r.to_dict() for r in run_result(result, "x", {}).requests]


def test_same_seed_gives_the_same_result(run_sim, step_model):
    spec = SyntheticSpec(num_requests=300, rate_rps=40, input=LengthDist("lognormal", 800, 1.0),
                         output=LengthDist("lognormal", 100, 1.0), prefix_groups=3, prefix_tokens=1024)
    first = run_sim(generate_synthetic(spec, 5), step_model, engines=3, policy="sjf-aging",
                    dispatch="power-of-two", kv_capacity_tokens=30_000)
    second = run_sim(generate_synthetic(spec, 5), step_model, engines=3, policy="sjf-aging",
                     dispatch="power-of-two", kv_capacity_tokens=30_000)
    other = run_sim(generate_synthetic(spec, 6), step_model, engines=3, policy="sjf-aging",
                    dispatch="power-of-two", kv_capacity_tokens=30_000)
    assert _records(first) == _records(second)
    assert _records(first) != _records(other)


@pytest.mark.parametrize("mode", STEP_MODES[:3])  # the reservation only gates admission (and avoids preemption)
def test_pooled_itl_equals_numpy_over_the_per_request_gaps(run_sim, step_model, mode):
    workload = [TraceRequest(f"r{i}", 0.01 * i, 300 + 37 * i, 50 + 13 * i) for i in range(40)]
    result = run_sim(workload, step_model, engines=2, kv_capacity_tokens=6000, max_batched_tokens=512, **mode)
    assert result.preemptions > 0  # gaps across a preemption are covered too
    run = run_result(result, "x", {}, include_itl=True)
    gaps = np.concatenate([r.itl_ms for r in run.requests])
    assert len(gaps) == sum(r.output_tokens - 1 for r in run.requests)
    stats = pooled_itl_stats(result)
    assert stats["mean"] == pytest.approx(gaps.mean())
    for key, q in PERCENTILES:
        assert stats[key] == pytest.approx(np.percentile(gaps, q))
    assert run.summary["itl_ms"] == stats
    assert run.summary["completed"] == 40


def test_stale_load_snapshots_refresh_on_their_period():
    live = EngineLoad(engine_id=0, kv_capacity_tokens=10)

    class _Engine:
        load = live

    loads = _Loads([_Engine()], refresh_s=1.0)
    assert loads.at(0.0)[0].running == 0
    live.running = 5
    assert loads.at(0.5)[0].running == 0
    assert loads.at(1.0)[0].running == 5
    assert _Loads([_Engine()], refresh_s=0.0).at(0.2)[0] is live


def test_worse_placement_gives_slower_decoding():
    model = preset_model("qwen3-30b-a3b-2xh100-ep2")
    workload = [TraceRequest(f"r{i}", 0.05 * i, 500, 200) for i in range(100)]

    def tpot(moe):
        config = ClusterConfig(engines=1, engine=EngineConfig(), queue_factory=lambda: create_queue("fcfs"),
                               moe=moe)
        result = simulate(workload, config, model, create_dispatcher("round-robin", 1))
        return run_result(result, "x", {}).summary["tpot_ms"]["mean"]

    assert tpot(MoeFactors(1.05, 0.3)) < tpot(MoeFactors(1.6, 0.5))


def test_unsorted_or_duplicate_workload_is_rejected(run_sim, step_model):
    a, b = TraceRequest("a", 1.0, 10, 2), TraceRequest("b", 0.5, 10, 2)
    with pytest.raises(ValueError, match="sorted"):
        run_sim([a, b], step_model)
    with pytest.raises(ValueError, match="unique"):
        run_sim([b, TraceRequest("b", 0.7, 10, 2)], step_model)
