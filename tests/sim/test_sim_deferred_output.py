"""SGLang's overlap scheduler on a CPU (``EngineConfig.deferred_output``): a step's tokens are
output when the step that started right after it ends, at its own end if the engine then idles."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from engine_dispatch.factory import create_dispatcher
from experiments.sim.cluster import simulate
from experiments.sim.config import ClusterConfig, EngineConfig
from experiments.sim.results import run_result
from experiments.workloads.types import TraceRequest
from perf_model.batch import BatchShape
from request_sched.policies import create_queue


@dataclass
class _Constant:
    """Every prefill step takes ``prefill_s``, every decode-only step ``decode_s``."""

    prefill_s: float = 0.050
    decode_s: float = 0.010

    def step_seconds(self, batch: BatchShape, moe: object = None) -> float:
        return self.prefill_s if batch.prefill_tokens else self.decode_s


def _run(workload: list[TraceRequest], deferred: bool):
    engine = EngineConfig(prefill_order="policy", deferred_output=deferred)
    config = ClusterConfig(engines=1, engine=engine, queue_factory=lambda: create_queue("fcfs"))
    result = simulate(workload, config, _Constant(), create_dispatcher("round-robin", 1))
    return result, {r.request_id: r for r in run_result(result, "sim", {}).requests}


def test_a_lone_requests_tokens_each_wait_for_the_next_step():
    result, records = _run([TraceRequest("a", 0.0, 100, 4)], deferred=True)
    engine = result.engines[0]
    assert engine.step_end_s == pytest.approx([0.05, 0.06, 0.07, 0.08])
    assert engine.step_emit_s == pytest.approx([0.06, 0.07, 0.08, 0.08])  # the last: the engine idles
    assert records["a"].ttft_ms == pytest.approx(60.0)
    assert records["a"].e2e_ms == pytest.approx(80.0)
    _, plain = _run([TraceRequest("a", 0.0, 100, 4)], deferred=False)
    assert plain["a"].ttft_ms == pytest.approx(50.0) and plain["a"].e2e_ms == pytest.approx(80.0)


def test_only_token_times_move_not_the_schedule():
    workload = [TraceRequest(f"r{i}", 0.013 * i, 200 + 50 * i, 3 + i % 5) for i in range(12)]
    deferred, late = _run(workload, deferred=True)
    plain, early = _run(workload, deferred=False)
    assert deferred.engines[0].step_end_s == plain.engines[0].step_end_s
    assert all(late[k].ttft_ms >= early[k].ttft_ms and late[k].e2e_ms >= early[k].e2e_ms for k in early)
    assert any(late[k].ttft_ms > early[k].ttft_ms for k in early)
