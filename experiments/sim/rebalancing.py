"""Run the simulator with the selective rebalancer: a :class:`~experiments.sim.cluster.Ticker`
that moves waiting requests between engine queues.

Every ``check_period_s`` of simulated time :class:`RebalancingTicker` measures the share of
waiting requests already past their TTFT deadline and asks the rebalancer whether a round is due
(its period, or sooner on a violation spike). A round shows the rebalancer every engine's live
load and its waiting requests in admission order (``RequestQueue.ordered``), with predicted
prefill tokens (uncached prompt on that engine, times an optional per-request error factor) and
bias-aware deadlines (:class:`~request_sched.deadline.DeadlineEstimator`). Moves are applied
``apply_lag_ticks`` ticks later (0 = at once; > 0 models a controller whose decisions reach the
engines late, so a move can race an admission); each round is told the moves still in flight, which
the rebalancer books on their targets and does not propose again.

A move is applied only if the request is still waiting on its source engine and has never run
(no decoded tokens: a preempted request keeps its engine, its KV history lives there); otherwise it
is dropped and counted in :attr:`RebalancingTicker.moves_lost_race`. Applying it withdraws the
request from the source queue and books, enqueues it on the target (where its prefix is matched
afresh) and tells the dispatcher it was sent there (``on_dispatched`` again, which re-books it), so
each request is always in exactly one place and finishes exactly once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from engine_dispatch.dispatcher import Dispatcher
from engine_dispatch.rebalance import EngineQueue, Move, QueuedRequest, SelectiveRebalancer
from experiments.sim.engine import SimEngine
from experiments.sim.request_state import SimRequest
from request_sched.deadline import DeadlineEstimator


class RebalancingTicker:
    """Drives a :class:`~engine_dispatch.rebalance.SelectiveRebalancer` inside :func:`simulate`.

    Args:
        rebalancer: the pure rebalancer.
        dispatcher: the run's dispatcher (told about every applied move).
        ttft_slo_s: TTFT objective used to count overdue waiting requests (spike trigger).
        deadlines: per-request deadlines for urgency (None: no deadlines, ``latest_start = inf``).
        size_error: request id -> factor on its predicted prefill tokens (missing: 1.0).
        check_period_s: simulated seconds between checks (> 0).
        apply_lag_ticks: ticks between proposing and applying moves (>= 0).

    Attributes:
        moves_applied: moves carried out; ``moves_lost_race``: proposed moves dropped because the
            request had been admitted (or had run) by the time they were applied.
        moved: request id -> number of times it was moved.
    """

    def __init__(self, rebalancer: SelectiveRebalancer, dispatcher: Dispatcher, ttft_slo_s: float,
                 deadlines: DeadlineEstimator | None = None,
                 size_error: Mapping[str, float] | None = None, check_period_s: float = 0.02,
                 apply_lag_ticks: int = 0) -> None:
        if not check_period_s > 0 or apply_lag_ticks < 0:
            raise ValueError("check_period_s must be > 0 and apply_lag_ticks >= 0")
        self.rebalancer = rebalancer
        self.dispatcher = dispatcher
        self.ttft_slo_s = ttft_slo_s
        self.deadlines = deadlines
        self.size_error = size_error or {}
        self.period_s = check_period_s
        self.apply_lag_ticks = apply_lag_ticks
        self._pending: deque[list[Move]] = deque()
        self.moves_applied = 0
        self.moves_lost_race = 0
        self.moved: dict[str, int] = {}

    def tick(self, engines: list[SimEngine], now: float) -> list[int]:
        """One check at ``now``; returns the engines that received requests."""
        gained: list[int] = []
        if self.apply_lag_ticks and len(self._pending) >= self.apply_lag_ticks:
            gained = self._apply(self._pending.popleft(), engines, now)
        waiting = sum(len(e.waiting) for e in engines)
        if not waiting:
            if self.apply_lag_ticks:
                self._pending.append([])
            return gained
        overdue = sum(1 for e in engines for r in e.waiting.values()
                      if now - r.trace.arrival_s > self.ttft_slo_s)
        moves: list[Move] = []
        if self.rebalancer.due(now, overdue / waiting):
            queues = [EngineQueue(e.load, [self._queued(w.host_ref, e) for w in e.queue.ordered(now)])
                      for e in engines]
            by_id = {rid: req for e in engines for rid, req in e.waiting.items()}
            in_flight = [move for batch in self._pending for move in batch]
            moves = self.rebalancer.propose(queues, now, lambda rid, target: self._predicted_tokens(
                by_id[rid], engines[target].cached_prefix_tokens(by_id[rid])), in_flight)
        if self.apply_lag_ticks:
            self._pending.append(moves)
            return gained
        return self._apply(moves, engines, now)

    def _predicted_tokens(self, req: SimRequest, cached: int) -> int:
        return round(max(0, req.prompt_tokens - cached) * self.size_error.get(req.trace.request_id, 1.0))

    def _queued(self, req: SimRequest, engine: SimEngine) -> QueuedRequest:
        latest = float("inf") if self.deadlines is None else self.deadlines.deadline(req.waiting).latest_start_s
        return QueuedRequest(request_id=req.trace.request_id,
                             predicted_tokens=self._predicted_tokens(req, req.waiting.cached_tokens),
                             latest_start_s=latest, movable=req.generated == 0 and not req.segments)

    def _apply(self, moves: list[Move], engines: list[SimEngine], now: float) -> list[int]:
        gained = []
        for move in moves:
            source = engines[move.source]
            req = source.waiting.get(move.request_id)
            if req is None or req.generated or req.segments or source.withdraw(move.request_id, now) is None:
                self.moves_lost_race += 1
                continue
            req.engine_id = move.target
            engines[move.target].enqueue(req, now)
            self.dispatcher.on_dispatched(req.dispatch, move.target, now)
            self.moves_applied += 1
            self.moved[move.request_id] = self.moved.get(move.request_id, 0) + 1
            gained.append(move.target)
        return gained
