"""The discrete-event loop: arrivals go through the dispatcher to engines that step on their own.

Events are request arrivals (the workload, sorted by time) and engine step ends (a heap of
``(time, sequence, engine)``). At an arrival the dispatcher picks an engine from the engines'
load reports, which are live or refreshed every ``load_refresh_s`` seconds (stale, as a real
router's polled metrics); an idle engine starts a step at once. A request "arrives" (is dispatched
and enqueued) ``EngineConfig.request_overhead.enqueue_s`` after it was sent (a constant, so the
arrival order is kept). At a step end the engine applies
the step and schedules the next. Ties are broken by event sequence number, so a run is a pure
function of its inputs (policies that draw random numbers take their own seed).

An optional :class:`Ticker` is called every ``period_s`` of simulated time while requests remain
(before arrivals and step ends due at the same time); it may move waiting requests between engine
queues (``experiments.sim.rebalancing``) and returns the engines whose queues gained requests, which
start a step if idle.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from engine_dispatch.dispatcher import Dispatcher
from engine_dispatch.types import EngineLoad
from experiments.sim.config import ClusterConfig
from experiments.sim.engine import SimEngine
from experiments.sim.request_state import SimRequest
from experiments.workloads.types import TraceRequest
from perf_model.batch import StepTimeModel


@dataclass
class SimResult:
    """What a simulation produced: every request's state and every engine's step times."""

    requests: list[SimRequest]
    engines: list[SimEngine]

    @property
    def preemptions(self) -> int:
        return sum(e.preemptions for e in self.engines)

    @property
    def steps(self) -> int:
        return sum(e.steps_done for e in self.engines)


class Ticker(Protocol):
    """Periodic hook of the event loop (e.g. a rebalancer moving waiting requests)."""

    period_s: float

    def tick(self, engines: list[SimEngine], now: float) -> Iterable[int]:
        """Act at ``now``; return the ids of engines whose waiting queues gained requests."""
        ...


class _Loads:
    """The engine loads the dispatcher sees: the live reports, or copies refreshed periodically."""

    def __init__(self, engines: list[SimEngine], refresh_s: float) -> None:
        self.live = [e.load for e in engines]
        self.refresh_s = refresh_s
        self.snapshot: list[EngineLoad] = [replace(load) for load in self.live]
        self.taken_s = float("-inf")

    def at(self, now: float) -> list[EngineLoad]:
        if self.refresh_s <= 0:
            return self.live
        if now - self.taken_s >= self.refresh_s:
            self.snapshot = [replace(load) for load in self.live]
            self.taken_s = now
        return self.snapshot


def simulate(workload: Sequence[TraceRequest], config: ClusterConfig, model: StepTimeModel,
             dispatcher: Dispatcher, ticker: Ticker | None = None) -> SimResult:
    """Replay ``workload`` (sorted by ``arrival_s``) on ``config.engines`` simulated engines.

    Args:
        workload: the requests; ``arrival_s`` must be non-decreasing and ids unique.
        config: engine limits, the request policy (one queue per engine) and load staleness.
        model: step-latency model of every engine (unless ``config.step_models`` gives one each).
        dispatcher: picks an engine per request (the same object the router and plugin run).
        ticker: optional periodic hook (see the module docstring).

    Returns every request's final state (finished or failed) and the engines' step times.
    """
    requests = [SimRequest(t) for t in workload]
    if len({r.trace.request_id for r in requests}) != len(requests):
        raise ValueError("workload: request ids must be unique")
    if any(b.trace.arrival_s < a.trace.arrival_s for a, b in zip(requests, requests[1:])):
        raise ValueError("workload: requests must be sorted by arrival_s")

    events: list[tuple[float, int, int]] = []
    sequence = itertools.count()

    def on_finish(req: SimRequest, now: float) -> None:
        dispatcher.on_finished(req.dispatch, req.engine_id, now, req.generated)

    models = config.step_models or [model] * config.engines
    engines = [SimEngine(i, config.engine, config.queue_factory(), models[i], config.moe, on_finish)
               for i in range(config.engines)]
    enqueue_s = config.engine.request_overhead.enqueue_s
    loads = _Loads(engines, config.load_refresh_s)

    def start_step(engine: SimEngine, now: float) -> None:
        duration = engine.begin_step(now)
        if duration is not None:
            heapq.heappush(events, (now + duration, next(sequence), engine.engine_id))

    next_arrival = 0
    next_tick = ticker.period_s if ticker is not None else float("inf")
    while next_arrival < len(requests) or events:
        if ticker is not None and next_tick <= min(
                events[0][0] if events else float("inf"),
                requests[next_arrival].trace.arrival_s + enqueue_s if next_arrival < len(requests)
                else float("inf")):
            for engine_id in ticker.tick(engines, next_tick):
                if not engines[engine_id].busy:
                    start_step(engines[engine_id], next_tick)
            next_tick += ticker.period_s
            continue
        if events and (next_arrival >= len(requests)
                       or events[0][0] <= requests[next_arrival].trace.arrival_s + enqueue_s):
            now, _, engine_id = heapq.heappop(events)
            engine = engines[engine_id]
            engine.end_step(now)
            start_step(engine, now)
            continue
        req = requests[next_arrival]
        next_arrival += 1
        now = req.trace.arrival_s + enqueue_s
        engine_id = dispatcher.pick(req.dispatch, loads.at(now), now)
        if not 0 <= engine_id < len(engines):
            raise RuntimeError(f"dispatcher {type(dispatcher).__name__} picked engine {engine_id}, "
                               f"expected 0..{len(engines) - 1}")
        req.engine_id = engine_id
        dispatcher.on_dispatched(req.dispatch, engine_id, now)
        engine = engines[engine_id]
        engine.enqueue(req, now)
        if not engine.busy:
            start_step(engine, now)
    stuck = [r.trace.request_id for r in requests if not (r.finished or r.failed)]
    if stuck:
        raise RuntimeError(f"simulation ended with {len(stuck)} unfinished requests, e.g. {stuck[0]}")
    return SimResult(requests=requests, engines=engines)
