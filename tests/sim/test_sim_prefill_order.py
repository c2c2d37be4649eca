"""SGLang step forming (``EngineConfig.prefill_order="policy"``): policy order among waiting
requests, decodes waiting for prefill steps unless mixed chunk, every request finished once."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.sim.config import EngineConfig
from experiments.sim.engine import SimEngine
from experiments.sim.results import token_times
from experiments.workloads.types import TraceRequest
from tests.sim.test_sim_engine import STEP_MODES, workloads


@pytest.fixture
def admissions(monkeypatch):
    """Per ``_admit`` call: (waiting ids in the queue's order before it, ids it admitted in order)."""
    calls: list[tuple[list[str], list[str]]] = []
    admit = SimEngine._admit

    def recorded(self, budget, decode_room, now):
        self._rematch_waiting()  # as _admit does first: cache-aware orders see current hits
        before = [w.request_id for w in self.queue.ordered(now)]
        running = set(self.running)
        admit(self, budget, decode_room, now)
        calls.append((before, [rid for rid in self.running if rid not in running]))

    monkeypatch.setattr(SimEngine, "_admit", recorded)
    return calls


@pytest.fixture
def finishes(monkeypatch):
    """Request id -> times ``SimEngine._finish`` was called for it."""
    counts: Counter[str] = Counter()
    finish = SimEngine._finish

    def counted(self, req, first_step, last_step, now):
        counts[req.trace.request_id] += 1
        finish(self, req, first_step, last_step, now)

    monkeypatch.setattr(SimEngine, "_finish", counted)
    return counts


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(workload=workloads(), capacity=st.integers(3_000, 8_000), max_running=st.integers(1, 8),
       budget=st.integers(16, 2048), policy=st.sampled_from(["fcfs", "sjf-aging", "hrrn", "lpm"]),
       mode=st.sampled_from(STEP_MODES))
def test_admitted_requests_are_a_prefix_of_the_policy_order_and_finish_once(
        admissions, finishes, run_sim, step_model, workload, capacity, max_running, budget, policy, mode):
    admissions.clear()
    finishes.clear()
    result = run_sim(workload, step_model, policy=policy, kv_capacity_tokens=capacity,
                     max_running=max_running, max_batched_tokens=budget, **mode)
    for before, admitted in admissions:
        assert admitted == before[:len(admitted)]  # no request overtakes one ranked ahead of it
    finished = [r.trace.request_id for r in result.requests if r.finished]
    assert finishes == Counter(finished)
    assert all(r.finished or r.failed for r in result.requests)


def _decoder_and_late_prompt(mode: dict) -> tuple[list[float], float, int]:
    """Request a decodes 40 tokens; b (a 4,096-token prompt) arrives while it does. Returns a's
    token times, b's first-token time and the steps that prefilled b."""
    from engine_dispatch.factory import create_dispatcher
    from experiments.sim.cluster import simulate
    from experiments.sim.config import ClusterConfig
    from perf_model.presets import preset_model
    from request_sched.policies import create_queue

    workload = [TraceRequest("a", 0.0, 64, 40), TraceRequest("b", 0.05, 4096, 2)]
    config = ClusterConfig(engines=1, engine=EngineConfig(max_batched_tokens=1024, **mode),
                           queue_factory=lambda: create_queue("fcfs"))
    result = simulate(workload, config, preset_model("qwen3-30b-a3b-h100"), create_dispatcher("round-robin", 1))
    engine = result.engines[0]
    a, b = result.requests
    prefill_steps = 4096 // 1024
    return token_times(a, engine).tolist(), token_times(b, engine)[0], prefill_steps


@pytest.mark.parametrize("mode, decodes_during_prefill", [
    ({"prefill_order": "admission"}, True),
    ({"prefill_order": "policy"}, False),
    ({"prefill_order": "policy", "mixed_chunk": True}, True),
])
def test_decodes_wait_for_prefill_steps_only_without_mixed_chunk(mode, decodes_during_prefill):
    a_times, b_first, prefill_steps = _decoder_and_late_prompt(mode)
    assert len(a_times) == 40
    during = [t for t in a_times if 0.05 < t <= b_first]
    if decodes_during_prefill:
        assert len(during) >= prefill_steps  # a token at the end of every prefill chunk of b
    else:
        assert len(during) <= 1  # only the step running when b arrived; none while b is prefilled
