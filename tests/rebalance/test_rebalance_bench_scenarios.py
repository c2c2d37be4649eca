"""The rebalance benchmark's scenario pieces: router replicas keep separate books, engine speed
drift and step noise are reproducible, and every variant serves every request once per scenario."""

import argparse

import numpy as np
import pytest

from engine_dispatch.factory import create_dispatcher
from engine_dispatch.types import DispatchRequest, EngineLoad
from experiments.benchmarks.rebalance_bench import (VARIANTS, ObservedModel, RouterReplicas,
                                                    Scenario, run_variant)
from experiments.workloads.types import TraceRequest
from perf_model.batch import BatchShape
from perf_model.online import OnlineStepModel
from perf_model.presets import preset_model

MODEL = preset_model("qwen3-30b-a3b-h100")


def test_router_replicas_take_requests_in_turn_and_book_only_their_own():
    replicas = RouterReplicas(lambda: create_dispatcher("least-requests", 2), 2)
    loads = [EngineLoad(engine_id=e, kv_capacity_tokens=1000, reported_s=0.0) for e in range(2)]
    picks = []
    for i in range(4):
        request = DispatchRequest(f"r{i}", prompt_tokens=10)
        picks.append(replicas.pick(request, loads, 0.1))
        replicas.on_dispatched(request, picks[-1], 0.1)
    # each replica balances only what it sent itself: both send their first request to engine 0
    assert picks == [0, 0, 1, 1]
    for i, engine in enumerate(picks):
        replicas.on_finished(DispatchRequest(f"r{i}", prompt_tokens=10), engine, 0.2, 1)
    assert all(r.tracker.in_flight(0) == r.tracker.in_flight(1) == 0 for r in replicas.replicas)


def test_speed_drift_is_seeded_and_wanders_around_the_truth():
    batch = BatchShape(prefill_tokens=2048, decode_seqs=8, kv_context_tokens=20_000)
    truth = MODEL.step_seconds(batch)

    def steps(seed):
        model = ObservedModel(MODEL, [OnlineStepModel(MODEL)], noise=0.0, seed=seed, drift_sigma=0.15,
                              drift_tau_s=0.5)
        return np.array([model.step_seconds(batch) for _ in range(3000)]) / truth

    a, b = steps(1), steps(1)
    assert np.array_equal(a, b)
    log_speed = np.log(a)
    assert abs(log_speed.std() - 0.15) < 0.05 and abs(log_speed.mean()) < 0.1
    assert np.corrcoef(log_speed[:-1], log_speed[1:])[0, 1] > 0.9  # correlated over steps


@pytest.mark.parametrize("scenario", [Scenario("one-router"), Scenario("router-replicas", routers=3),
                                      Scenario("speed-drift", drift_sigma=0.2),
                                      Scenario("straggler", straggler=True)], ids=lambda s: s.name)
def test_every_variant_serves_every_request(scenario):
    rng = np.random.default_rng(0)
    arrivals = np.cumsum(rng.exponential(0.004, 120))
    requests = [TraceRequest(f"r{i}", float(t), int(rng.integers(200, 6000)), int(rng.integers(1, 40)))
                for i, t in enumerate(arrivals)]
    args = argparse.Namespace(engines=3, gpu_model="qwen3-30b-a3b-h100", chunk_tokens=8192,
                              step_noise=0.03, drift_tau_s=1.0, slo_ttft_ms=500.0, period_s=0.1,
                              max_moves_per_s=200.0, load_refresh_s=0.2, straggler_factor=3.0,
                              straggler_at_s=0.1, bound_s=None)
    for variant in VARIANTS:
        result = run_variant(variant, requests, 0.3, 0, args, scenario)
        assert result["completed"] == len(requests) and result["failed"] == 0, variant
        if variant in ("no-rebalancing", "no-rebalancing-fcfs", "local-only"):
            assert result["moves"] == 0
