"""Helpers shared by the simulator tests: small workloads and a one-call simulation."""

from __future__ import annotations

import pytest

from engine_dispatch.factory import create_dispatcher
from experiments.sim.cluster import SimResult, simulate
from experiments.sim.config import ClusterConfig, EngineConfig
from experiments.workloads.types import TraceRequest
from perf_model.presets import preset_model
from request_sched.policies import create_queue


@pytest.fixture(scope="session")
def step_model():
    return preset_model("qwen3-30b-a3b-h100")


def _run_sim(workload: list[TraceRequest], model, engines: int = 1, policy: str = "fcfs",
            dispatch: str = "round-robin", **engine_options) -> SimResult:
    config = ClusterConfig(engines=engines, engine=EngineConfig(**engine_options),
                           queue_factory=lambda: create_queue(policy))
    options = {"seed": 3} if dispatch == "power-of-two" else {}
    return simulate(workload, config, model, create_dispatcher(dispatch, engines, **options))


@pytest.fixture(scope="session")
def run_sim():
    """``run_sim(workload, model, engines=1, policy="fcfs", dispatch="round-robin", **engine_options)``."""
    return _run_sim
