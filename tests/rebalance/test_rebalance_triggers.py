"""When the rebalancer runs a round early: violation spikes and bursts that landed unevenly."""

from engine_dispatch.rebalance import RebalanceConfig, SelectiveRebalancer
from engine_dispatch.types import EngineLoad
from perf_model.presets import preset_model

MODEL = preset_model("qwen3-30b-a3b-h100")


def _loads(pending: list[int], healthy: list[bool] | None = None) -> list[EngineLoad]:
    healthy = healthy or [True] * len(pending)
    return [EngineLoad(engine_id=i, pending_prefill_tokens=p, healthy=h)
            for i, (p, h) in enumerate(zip(pending, healthy))]


def test_drain_gap_is_the_spread_of_predicted_drain_over_healthy_engines():
    rebalancer = SelectiveRebalancer(RebalanceConfig(), MODEL)
    assert rebalancer.drain_gap_s(_loads([8192, 8192, 8192])) == 0.0
    gap = rebalancer.drain_gap_s(_loads([0, 8 * 8192]))
    assert gap > 0
    assert rebalancer.drain_gap_s(_loads([0, 16 * 8192])) > gap
    # an unhealthy engine's backlog is not a reason to rebalance
    assert rebalancer.drain_gap_s(_loads([0, 0, 16 * 8192], [True, True, False])) == 0.0
    assert rebalancer.drain_gap_s(_loads([0, 16 * 8192], [True, False])) == 0.0


def test_uneven_burst_triggers_a_round_early_but_not_before_min_interval():
    config = RebalanceConfig(period_s=1.0, min_interval_s=0.05, trigger_gap_s=0.25)
    rebalancer = SelectiveRebalancer(config, MODEL)
    rebalancer.propose([], 0.0)  # a round at t = 0
    gap = rebalancer.drain_gap_s(_loads([0, 64 * 8192]))
    assert gap >= config.trigger_gap_s
    assert not rebalancer.due(0.01, drain_gap_s=gap)   # too soon after the last round
    assert rebalancer.due(0.06, drain_gap_s=gap)
    assert not rebalancer.due(0.06, drain_gap_s=0.1)   # balanced: wait for the period
    assert rebalancer.due(1.0)


def test_burst_trigger_can_be_disabled():
    rebalancer = SelectiveRebalancer(RebalanceConfig(period_s=1.0, trigger_gap_s=0.0), MODEL)
    rebalancer.propose([], 0.0)
    assert not rebalancer.due(0.5, drain_gap_s=100.0)
