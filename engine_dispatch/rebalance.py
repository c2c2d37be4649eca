"""Selective rebalancing of waiting requests (the GAPS loop): move a request only when it pays.

Dispatch decides once, at arrival, on load reports that may be stale and sizes that may be
mispredicted. Every ``period_s`` (or sooner, down to ``min_interval_s``, when the share of waiting
requests already past their TTFT deadline reaches ``spike_fraction``) the host calls
:meth:`SelectiveRebalancer.propose` with each engine's waiting requests in admission order and its
:class:`~engine_dispatch.types.EngineLoad`; the rebalancer returns moves.

Predicted first-token time of a waiting request ``r`` on engine ``e`` (seconds, host clock)::

    ready_e(T) = now + drain_e(T)
    before     = ready_source(base_s + sum of predicted tokens queued ahead of r + tokens_s(r))
    after      = ready_target(base_t + all predicted tokens queued on t + tokens_t(r)) + migration_cost_s

``drain_e`` is the dispatcher's time-to-drain (:meth:`engine_dispatch.scorers.PredictedLoadScorer.
drain_seconds`: prefill in chunks of ``chunk_tokens`` beside the engine's running decode batch,
priced by engine ``e``'s step model), ``base_e`` the prefill already in progress (reported pending
prefill minus the waiting requests' tokens) and ``tokens_e(r)`` the request's predicted prefill
work there (its uncached prompt; the host says what a target's prefix cache would save). A moved
request is assumed to join the *back* of the target queue. Sizes are the host's predictions: with
``size_estimate="uniform"`` (the no-prediction ablation) every waiting request counts as the mean.

Selection: an engine is overloaded when ``drain(all its work) > overload_ratio * mean +
overload_abs_s`` over healthy engines. Its movable waiting requests (never running or preempted
ones, never one moved within ``cooldown_s``) are candidates when their predicted wait
``before - now`` exceeds ``long_wait_s`` or their slack ``latest_start - predicted start`` is below
``urgent_slack_s``; most urgent (least slack, then longest wait) first. A candidate moves to the
engine with the earliest ``after`` iff ``after + min_gain_s < before``; the books are updated
before the next candidate, so within a round no move makes an earlier-moved request's prediction
worse (moves only leave the source, and arrivals on a target queue up behind it).

Cap: a token bucket allows ``max_moves_per_s`` on average and ``max_burst`` at once, so over any
interval of ``T`` seconds at most ``max_burst + max_moves_per_s * T`` moves are proposed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine_dispatch.scorers import PredictedLoadScorer
from engine_dispatch.types import EngineLoad
from perf_model.batch import StepTimeModel

#: accepted values of ``RebalanceConfig.size_estimate``
SIZE_ESTIMATES = ("predicted", "uniform")


@dataclass(frozen=True)
class RebalanceConfig:
    """Knobs of :class:`SelectiveRebalancer` (seconds unless stated).

    Attributes:
        period_s: time between regular rounds (> 0).
        min_interval_s: least time between rounds when a violation spike triggers one (> 0).
        spike_fraction: share of waiting requests past their TTFT deadline that triggers a round
            early (0..1).
        max_moves_per_s: average move rate allowed (> 0).
        max_burst: moves allowed at once (>= 1).
        migration_cost_s: predicted cost of moving one waiting request (re-sending it).
        min_gain_s: extra predicted saving a move must bring (>= 0).
        long_wait_s: a request predicted to wait longer than this is a candidate.
        urgent_slack_s: a request with less slack than this is a candidate.
        overload_ratio, overload_abs_s: engine overload test (see module docstring).
        cooldown_s: a moved request stays put for this long.
        chunk_tokens: prefill chunk of the drain model (the engines' chunked-prefill size).
        max_candidates: candidates examined per round at most.
        size_estimate: ``"predicted"`` (the host's per-request sizes) or ``"uniform"``.
        enabled: False = a round is never due: a late-binding host then only holds and releases.
    """

    period_s: float = 0.1
    min_interval_s: float = 0.05
    spike_fraction: float = 0.1
    max_moves_per_s: float = 200.0
    max_burst: int = 32
    migration_cost_s: float = 0.005
    min_gain_s: float = 0.0
    long_wait_s: float = 0.25
    urgent_slack_s: float = 0.1
    overload_ratio: float = 1.2
    overload_abs_s: float = 0.02
    cooldown_s: float = 1.0
    chunk_tokens: int = 8192
    max_candidates: int = 64
    size_estimate: str = "predicted"
    enabled: bool = True

    def __post_init__(self) -> None:
        rules = {  # field -> (holds, what is expected)
            "period_s": (self.period_s > 0, "> 0"),
            "min_interval_s": (self.min_interval_s > 0, "> 0"),
            "spike_fraction": (0 <= self.spike_fraction <= 1, "in [0, 1]"),
            "max_moves_per_s": (self.max_moves_per_s > 0, "> 0"),
            "max_burst": (self.max_burst >= 1, ">= 1"),
            "migration_cost_s": (self.migration_cost_s >= 0, ">= 0"),
            "min_gain_s": (self.min_gain_s >= 0, ">= 0"),
            "long_wait_s": (self.long_wait_s >= 0, ">= 0"),
            "overload_ratio": (self.overload_ratio >= 1, ">= 1"),
            "overload_abs_s": (self.overload_abs_s >= 0, ">= 0"),
            "cooldown_s": (self.cooldown_s >= 0, ">= 0"),
            "chunk_tokens": (self.chunk_tokens >= 1, ">= 1"),
            "max_candidates": (self.max_candidates >= 1, ">= 1"),
            "size_estimate": (self.size_estimate in SIZE_ESTIMATES, f"one of {', '.join(SIZE_ESTIMATES)}"),
        }
        for name, (holds, expected) in rules.items():
            if not holds:
                raise ValueError(f"rebalance.{name}: expected {expected}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class QueuedRequest:
    """A waiting request as the rebalancer sees it.

    Attributes:
        request_id: the host's id.
        predicted_tokens: predicted prefill work on its current engine (tokens, >= 0).
        latest_start_s: latest start that meets its SLO (:mod:`request_sched.deadline`); ``inf``
            when it has none.
        movable: False for requests the host must keep (e.g. preempted ones, which have run).
    """

    request_id: str
    predicted_tokens: int
    latest_start_s: float = math.inf
    movable: bool = True


@dataclass(frozen=True)
class EngineQueue:
    """One engine's state: its load report and its waiting requests in admission order."""

    load: EngineLoad
    waiting: Sequence[QueuedRequest]


@dataclass(frozen=True)
class Move:
    """Move ``request_id`` from engine ``source`` to ``target``.

    ``before_s`` / ``after_s``: predicted first-token times (host clock) if it stays / if it moves
    (``after_s`` includes the migration cost); always ``after_s < before_s``.
    """

    request_id: str
    source: int
    target: int
    before_s: float
    after_s: float


#: ``work_on(request_id, engine_id) -> predicted prefill tokens`` on another engine
WorkOn = Callable[[str, int], int]


class MoveBudget:
    """Token bucket: ``rate`` moves per second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last_s: float | None = None

    def available(self, now: float) -> int:
        """Moves allowed at ``now`` (refills the bucket; ``now`` must not go backwards)."""
        if self._last_s is not None:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last_s) * self.rate)
        self._last_s = now
        return int(self._tokens)

    def spend(self, moves: int) -> None:
        self._tokens -= moves


class _Books:
    """Per-engine predicted work during one round (tokens), updated as moves are decided."""

    def __init__(self, engines: Sequence[EngineQueue], sizes: list[list[int]]) -> None:
        self.sizes = sizes
        self.prefix = []
        self.base = []
        self.total = []
        for engine, tokens in zip(engines, sizes):
            sums = [0]
            for t in tokens:
                sums.append(sums[-1] + t)
            self.prefix.append(sums)
            self.base.append(max(0, engine.load.pending_prefill_tokens - sums[-1]))
            self.total.append(self.base[-1] + sums[-1])
        self.moved_out: list[list[tuple[int, int]]] = [[] for _ in engines]  # (position, tokens)

    def move(self, source: int, position: int, target: int, work: int) -> None:
        """Book the request at ``position`` on ``source`` as gone to ``target`` (``work`` tokens there)."""
        own = self.sizes[source][position]
        self.moved_out[source].append((position, own))
        self.total[source] -= own
        self.total[target] += work

    def ahead(self, engine: int, position: int) -> int:
        """Tokens before ``position`` on ``engine`` still queued there (in-progress prefill included)."""
        gone = sum(t for p, t in self.moved_out[engine] if p < position)
        return self.base[engine] + self.prefix[engine][position] - gone


class SelectiveRebalancer:
    """Proposes moves of waiting requests between engines (pure; see the module docstring).

    Args:
        config: knobs.
        step_models: one step model per engine (index = engine id), or one for all; online
            models (:class:`perf_model.online.OnlineStepModel`) are read afresh every round.
    """

    def __init__(self, config: RebalanceConfig,
                 step_models: StepTimeModel | Sequence[StepTimeModel]) -> None:
        self.config = config
        self.step_models = step_models
        self.budget = MoveBudget(config.max_moves_per_s, config.max_burst)
        self._last_round_s = -math.inf
        self._moved_at: dict[str, float] = {}
        self.rounds = 0
        self.moves = 0

    def due(self, now: float, overdue_fraction: float = 0.0) -> bool:
        """Whether a round should run at ``now``: the period elapsed, or a violation spike
        (``overdue_fraction`` = share of waiting requests past their TTFT deadline)."""
        if not self.config.enabled:
            return False
        since = now - self._last_round_s
        if since >= self.config.period_s:
            return True
        return overdue_fraction >= self.config.spike_fraction > 0 and since >= self.config.min_interval_s

    def _drain(self, engine_id: int) -> Callable[[int, int, int], float]:
        """``drain(running, kv_used, tokens)`` seconds on ``engine_id``, priced by its model now."""
        return PredictedLoadScorer(self._model(engine_id), self.config.chunk_tokens, 1.0).drain_seconds

    def _model(self, engine_id: int) -> StepTimeModel:
        models = self.step_models
        return models[engine_id] if isinstance(models, Sequence) else models

    def propose(self, engines: Sequence[EngineQueue], now: float,
                work_on: WorkOn | None = None, in_flight: Sequence[Move] = ()) -> list[Move]:
        """One round: moves to apply now, at most what the move cap allows.

        Args:
            engines: every engine, index = ``load.engine_id``.
            now: host clock (seconds), non-decreasing between calls.
            work_on: predicted prefill tokens of a request on another engine (default: the same
                as on its current engine).
            in_flight: moves proposed earlier that the queues do not show yet (a host that applies
                moves late). Each one still waiting on its source is booked as already on its
                target (at the back) and is not proposed again.
        """
        cfg = self.config
        self._last_round_s = now
        self.rounds += 1
        allowed = self.budget.available(now)
        healthy = [e.load.engine_id for e in engines if e.load.healthy]
        if allowed < 1 or len(healthy) < 2:
            return []
        for rid in [r for r, t in self._moved_at.items() if now - t >= cfg.cooldown_s]:
            del self._moved_at[rid]
        sizes = self._sizes(engines)
        books = _Books(engines, sizes)
        drains = [self._drain(e.load.engine_id) for e in engines]
        pending = self._book_in_flight(engines, books, in_flight, work_on)

        def ready(engine: int, tokens: int) -> float:
            load = engines[engine].load
            return now + drains[engine](load.running, load.kv_used_tokens, tokens)

        candidates = self._candidates(engines, books, healthy, ready, now, pending)
        moves: list[Move] = []
        for _, _, source, position in candidates:
            if len(moves) >= allowed:
                break
            request = engines[source].waiting[position]
            own = sizes[source][position]
            before = ready(source, books.ahead(source, position) + own)
            best: tuple[float, int, int] | None = None
            for target in healthy:
                if target == source:
                    continue
                work = own if work_on is None or cfg.size_estimate == "uniform" else work_on(
                    request.request_id, target)
                after = ready(target, books.total[target] + work) + cfg.migration_cost_s
                if best is None or after < best[0]:
                    best = (after, target, work)
            if best is None or not best[0] + cfg.min_gain_s < before:
                continue
            after, target, work = best
            books.move(source, position, target, work)
            moves.append(Move(request.request_id, source, target, before, after))
            self._moved_at[request.request_id] = now
        self.budget.spend(len(moves))
        self.moves += len(moves)
        return moves

    def _book_in_flight(self, engines: Sequence[EngineQueue], books: _Books, in_flight: Sequence[Move],
                        work_on: WorkOn | None) -> set[str]:
        """Book ``in_flight`` moves whose request still waits on its source; returns their ids."""
        if not in_flight:
            return set()
        where = {r.request_id: (e, p) for e, q in enumerate(engines) for p, r in enumerate(q.waiting)}
        booked: set[str] = set()
        for move in in_flight:
            found = where.get(move.request_id)
            if found is None or found[0] != move.source or move.request_id in booked:
                continue  # admitted, gone, or already moved: the queues show where it is
            source, position = found
            own = books.sizes[source][position]
            work = own if work_on is None or self.config.size_estimate == "uniform" else work_on(
                move.request_id, move.target)
            books.move(source, position, move.target, work)
            booked.add(move.request_id)
        return booked

    def _sizes(self, engines: Sequence[EngineQueue]) -> list[list[int]]:
        """Predicted tokens of every waiting request (all equal to the mean when ``uniform``)."""
        sizes = [[max(0, r.predicted_tokens) for r in e.waiting] for e in engines]
        if self.config.size_estimate == "uniform":
            count = sum(len(s) for s in sizes)
            mean = round(sum(sum(s) for s in sizes) / count) if count else 0
            sizes = [[mean] * len(s) for s in sizes]
        return sizes

    def _candidates(self, engines: Sequence[EngineQueue], books: _Books, healthy: list[int],
                    ready: Callable[[int, int], float], now: float,
                    pending: set[str]) -> list[tuple[float, float, int, int]]:
        """``(slack, -wait, engine, position)`` of candidate requests, most urgent first."""
        cfg = self.config
        drain = {e: ready(e, books.total[e]) - now for e in healthy}
        mean = sum(drain.values()) / len(drain)
        found: list[tuple[float, float, int, int]] = []
        for e in healthy:
            if drain[e] <= cfg.overload_ratio * mean + cfg.overload_abs_s:
                continue
            for position, request in enumerate(engines[e].waiting):
                if not request.movable or request.request_id in self._moved_at or request.request_id in pending:
                    continue
                ahead = books.ahead(e, position)
                start = ready(e, ahead) if ahead > 0 else now
                wait = ready(e, ahead + books.sizes[e][position]) - now
                slack = request.latest_start_s - start
                if wait > cfg.long_wait_s or slack < cfg.urgent_slack_s:
                    found.append((slack, -wait, e, position))
        found.sort()
        return found[:cfg.max_candidates]
