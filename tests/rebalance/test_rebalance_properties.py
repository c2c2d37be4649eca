"""Selective rebalancer invariants (hypothesis): moves never make a moved request's predicted
first-token time later, the move cap holds, only movable waiting requests move, and in the
simulator every moved request is served exactly once, also when moves race admissions."""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine_dispatch.factory import create_dispatcher
from engine_dispatch.rebalance import (EngineQueue, QueuedRequest, RebalanceConfig,
                                       SelectiveRebalancer)
from engine_dispatch.scorers import PredictedLoadScorer
from engine_dispatch.types import EngineLoad
from experiments.sim.cluster import simulate
from experiments.sim.config import ClusterConfig, EngineConfig
from experiments.sim.rebalancing import RebalancingTicker
from experiments.workloads.types import TraceRequest
from perf_model.presets import preset_model
from request_sched.policies import create_queue

MODEL = preset_model("qwen3-30b-a3b-h100")
EAGER = RebalanceConfig(period_s=0.01, min_interval_s=0.01, long_wait_s=0.0, urgent_slack_s=0.0,
                        overload_ratio=1.0, overload_abs_s=0.0, cooldown_s=0.0,
                        migration_cost_s=0.001, max_moves_per_s=1000.0, max_burst=64)

queue_entries = st.lists(st.tuples(st.integers(1, 12_000), st.booleans(),
                                   st.one_of(st.just(math.inf), st.floats(-1.0, 5.0))),
                         max_size=12)


@st.composite
def clusters(draw):
    n = draw(st.integers(2, 5))
    engines = []
    for e in range(n):
        waiting = [QueuedRequest(f"e{e}-r{i}", tokens, latest, movable)
                   for i, (tokens, movable, latest) in enumerate(draw(queue_entries))]
        in_progress = draw(st.integers(0, 8192))
        load = EngineLoad(engine_id=e, running=draw(st.integers(0, 64)), waiting=len(waiting),
                          kv_used_tokens=draw(st.integers(0, 150_000)), kv_capacity_tokens=160_000,
                          pending_prefill_tokens=in_progress + sum(r.predicted_tokens for r in waiting),
                          healthy=draw(st.booleans()) or e < 2)
        engines.append(EngineQueue(load, waiting))
    return engines


def _ready(engines, now):
    drains = [PredictedLoadScorer(MODEL, EAGER.chunk_tokens, 1.0).drain_seconds for _ in engines]
    return lambda e, tokens: now + drains[e](engines[e].load.running, engines[e].load.kv_used_tokens, tokens)


def _predicted_starts(engines, queues, now):
    """Predicted first-token time of every request in ``queues`` (engine -> [(id, tokens)])."""
    ready = _ready(engines, now)
    base = {e: q.load.pending_prefill_tokens - sum(r.predicted_tokens for r in q.waiting)
            for e, q in enumerate(engines)}
    times = {}
    for e, queue in queues.items():
        ahead = base[e]
        for rid, tokens in queue:
            ahead += tokens
            times[rid] = ready(e, ahead)
    return times


def _apply(queues, moves):
    """Queues after ``moves`` (each moved request appended to its target, in move order)."""
    queues = {e: list(q) for e, q in queues.items()}
    for move in moves:
        item = next(x for x in queues[move.source] if x[0] == move.request_id)
        queues[move.source].remove(item)
        queues[move.target].append(item)
    return queues


def _check_moves(engines, queues, moves, now):
    """Every move is legal and leaves its request's predicted first token no later."""
    requests = {r.request_id: r for q in engines for r in q.waiting}
    initial = _predicted_starts(engines, queues, now)
    for move in moves:
        assert move.after_s < move.before_s
        assert requests[move.request_id].movable
        assert engines[move.target].load.healthy and move.source != move.target
    final = _predicted_starts(engines, _apply(queues, moves), now)
    for move in moves:
        assert final[move.request_id] + EAGER.migration_cost_s <= initial[move.request_id] + 1e-12
    assert len({m.request_id for m in moves}) == len(moves)


def _queues(engines):
    return {e: [(r.request_id, r.predicted_tokens) for r in q.waiting] for e, q in enumerate(engines)}


@settings(max_examples=150, deadline=None)
@given(clusters())
def test_moves_never_increase_predicted_completion(engines):
    now = 10.0
    moves = SelectiveRebalancer(EAGER, MODEL).propose(engines, now)
    _check_moves(engines, _queues(engines), moves, now)


@settings(max_examples=100, deadline=None)
@given(clusters(), st.integers(0, 64))
def test_in_flight_moves_are_booked_on_their_targets(engines, keep):
    """Moves proposed earlier but not yet visible in the queues (a host applying moves late):
    the next round never proposes them again, and its own moves never make a moved request's
    prediction worse in the queues as they will be once the in-flight moves land."""
    now = 10.0
    in_flight = SelectiveRebalancer(EAGER, MODEL).propose(engines, now)[:keep]
    moves = SelectiveRebalancer(EAGER, MODEL).propose(engines, now, in_flight=in_flight)
    assert not {m.request_id for m in moves} & {m.request_id for m in in_flight}
    _check_moves(engines, _apply(_queues(engines), in_flight), moves, now)


@settings(max_examples=60, deadline=None)
@given(clusters(), st.lists(st.floats(0.0, 0.5), min_size=1, max_size=25),
       st.floats(1.0, 50.0), st.integers(1, 8))
def test_move_cap_holds(engines, gaps, rate, burst):
    config = RebalanceConfig(**{**EAGER.__dict__, "max_moves_per_s": rate, "max_burst": burst})
    rebalancer = SelectiveRebalancer(config, MODEL)
    now, log = 0.0, []
    for gap in gaps:
        now += gap
        log.append((now, len(rebalancer.propose(engines, now))))  # same imbalance every round
    for i in range(len(log)):
        for j in range(i, len(log)):
            moved = sum(count for _, count in log[i:j + 1])
            assert moved <= burst + rate * (log[j][0] - log[i][0]) + 1e-9


def test_a_disabled_rebalancer_is_never_due():
    rebalancer = SelectiveRebalancer(RebalanceConfig(enabled=False), MODEL)
    assert not rebalancer.due(0.0) and not rebalancer.due(100.0, overdue_fraction=1.0)
    assert SelectiveRebalancer(RebalanceConfig(), MODEL).due(0.0)


def test_nothing_moves_between_balanced_engines():
    engines = [EngineQueue(EngineLoad(engine_id=e, pending_prefill_tokens=4096),
                           [QueuedRequest(f"{e}", 4096)]) for e in range(4)]
    assert SelectiveRebalancer(RebalanceConfig(), MODEL).propose(engines, 0.0) == []


def test_config_validation():
    with pytest.raises(ValueError, match="max_burst"):
        RebalanceConfig(max_burst=0)
    with pytest.raises(ValueError, match="size_estimate"):
        RebalanceConfig(size_estimate="oracle")


class CountingDispatcher:
    """Round robin that counts finishes per request (and books re-dispatches)."""

    def __init__(self, engines):
        self.inner = create_dispatcher("round-robin", engines)
        self.finished: dict[str, int] = {}
        self.dispatched: dict[str, int] = {}

    def pick(self, request, engines, now):
        return 0 if len(request.request_id) % 3 else self.inner.pick(request, engines, now)

    def on_dispatched(self, request, engine_id, now):
        self.dispatched[request.request_id] = engine_id

    def on_first_token(self, request, engine_id, now):
        pass

    def on_finished(self, request, engine_id, now, output_tokens):
        self.finished[request.request_id] = self.finished.get(request.request_id, 0) + 1
        assert self.dispatched[request.request_id] == engine_id


workloads = st.lists(st.tuples(st.floats(0.0, 0.05), st.integers(1, 6000), st.integers(1, 64)),
                     min_size=1, max_size=60)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads, st.integers(0, 3), st.sampled_from(["fcfs", "sjf-aging"]),
       st.integers(2, 4), st.integers(4_000, 40_000))
def test_moved_requests_are_served_exactly_once(items, lag, policy, n_engines, kv_tokens):
    t, requests = 0.0, []
    for i, (gap, prompt, output) in enumerate(items):
        t += gap
        requests.append(TraceRequest(f"r{i}{'x' * (i % 4)}", t, prompt, output,
                                     prefix_blocks=tuple(range(prompt // 512 // 2))))
    dispatcher = CountingDispatcher(n_engines)
    ticker = RebalancingTicker(SelectiveRebalancer(EAGER, MODEL), dispatcher, ttft_slo_s=0.05,
                               check_period_s=0.005, apply_lag_ticks=lag)
    config = ClusterConfig(engines=n_engines, queue_factory=lambda: create_queue(policy),
                           engine=EngineConfig(max_running=4, max_batched_tokens=2048,
                                               kv_capacity_tokens=kv_tokens))
    result = simulate(requests, config, MODEL, dispatcher, ticker)
    ids = [r.request_id for r in requests]
    assert sorted(dispatcher.finished) == sorted(ids)
    assert all(count == 1 for count in dispatcher.finished.values())
    for req in result.requests:
        steps = len(result.engines[req.engine_id].step_end_s)
        assert req.finished != req.failed
        assert all(0 <= a <= b < steps for a, b in req.segments)
    proposed = ticker.rebalancer.moves
    pending = sum(len(m) for m in ticker._pending)
    assert ticker.moves_applied + ticker.moves_lost_race + pending == proposed
    assert sum(ticker.moved.values()) == ticker.moves_applied
