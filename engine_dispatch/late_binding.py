"""Late binding: hold requests in a short queue per engine and bind them to an engine when sent.

A host (the HTTP router, SGLang's DP controller) that picked engine ``e`` for a request does not
send it at once when ``e`` is full (``max_in_flight`` requests sent to it and not finished): the
request waits in ``e``'s hold queue. Each hold queue is a :class:`~request_sched.queue.RequestQueue`
(``make_queue``; FCFS by default, or the request policy the engines themselves run, so that holding
does not undo their order). When a slot frees, the queue's next request in that order is released
(sent). While a request is held, the pure :class:`~engine_dispatch.rebalance.SelectiveRebalancer`
may re-target it to another engine (it enters that engine's queue with its original hold time, so
under FCFS it lands by when it was first held, never behind requests held after it); once released
it never moves again.

A host that learns completions only from the engines' own reports (SGLang's DP controller sees
no request finish) calls ``report_occupancy`` with the requests each report counts and
``finished`` for every sent request a report has come to count: ``in_flight`` is then "sent and not
yet in a report", and an engine is full when the two together reach ``max_in_flight``.

Every request is in exactly one state: *held* on one engine, *sent* to one engine, or gone.
Transitions (all O(1) or O(queue)): ``submit`` -> held or sent; ``release`` held -> sent (only to
an engine the host calls healthy); ``finished`` sent -> gone; ``withdraw`` held -> gone (client
left, or nowhere to go); ``retarget`` / applied moves held -> held elsewhere. A move whose request
is no longer held on its source, or whose target is not healthy, is dropped (counted in
``moves_dropped``): a move racing a release or a completion can neither duplicate nor lose it.

Configuration (TOML, every key optional)::

    [hold]
    max_in_flight = 4        # requests sent to one engine and not finished at which it is full
    tick_s = 0.02            # host's release / rebalance check period, seconds
    step_model = "qwen3-30b-a3b-h100"  # preset name or a `moesched calibrate` coefficient file
                                       # (prices the rebalancer's drain times)
    [rebalance]              # any field of engine_dispatch.rebalance.RebalanceConfig
    max_moves_per_s = 50.0
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine_dispatch.config import build_table
from engine_dispatch.rebalance import EngineQueue, Move, QueuedRequest, RebalanceConfig, SelectiveRebalancer
from engine_dispatch.types import EngineLoad
from request_sched.policies.fcfs import FcfsQueue
from request_sched.queue import RequestQueue
from request_sched.types import WaitingRequest


@dataclass(frozen=True)
class HoldParams:
    """Hold-queue knobs (see the module docstring)."""

    max_in_flight: int = 4
    tick_s: float = 0.02
    step_model: str = "qwen3-30b-a3b-h100"

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ValueError(f"hold.max_in_flight: expected an integer >= 1, got {self.max_in_flight}")
        if not self.tick_s > 0:
            raise ValueError(f"hold.tick_s: expected a number > 0, got {self.tick_s}")


@dataclass(frozen=True)
class LateBindingConfig:
    """``[hold]`` and ``[rebalance]`` tables of a late-binding TOML file."""

    hold: HoldParams = field(default_factory=HoldParams)
    rebalance: RebalanceConfig = field(default_factory=RebalanceConfig)


def load_late_binding(path: str | Path | None) -> LateBindingConfig:
    """Read and validate a late-binding TOML file (None: defaults). Raises ValueError/OSError naming it."""
    if path is None:
        return LateBindingConfig()
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data: dict[str, Any] = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from exc
    try:
        unknown = sorted(set(data) - {"hold", "rebalance"})
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown table; expected hold or rebalance")
        hold = build_table(HoldParams, data.get("hold", {}), "hold")
        rebalance = build_table(RebalanceConfig, data.get("rebalance", {}), "rebalance")
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return LateBindingConfig(hold, rebalance)


@dataclass
class Held:
    """A request waiting in a hold queue.

    Attributes:
        waiting: its entry in the engine's hold queue (id, prompt tokens, first hold time).
        engine_id: the engine whose queue holds it.
        latest_start_s: latest start meeting its SLO (``inf``: none).
        booked_s: host clock of its latest booking with the dispatcher (seconds; see
            :meth:`HoldQueues.stale_bookings`).
    """

    waiting: WaitingRequest
    engine_id: int
    latest_start_s: float
    booked_s: float

    @property
    def request_id(self) -> str:
        return self.waiting.request_id

    @property
    def tokens(self) -> int:
        """Predicted prefill tokens (its prompt length)."""
        return self.waiting.prompt_tokens

    @property
    def held_s(self) -> float:
        """Host clock when it was first held (seconds)."""
        return self.waiting.enqueue_s


@dataclass(frozen=True)
class Release:
    """``request_id`` is to be sent now to ``engine_id``; it was held ``held_for_s`` seconds."""

    request_id: str
    engine_id: int
    held_for_s: float


class HoldQueues:
    """Per-engine hold queues and in-flight counts (pure; the host owns clocks and sending).

    Args:
        num_engines: engines ``0..num_engines-1``.
        max_in_flight: sent-and-unfinished requests at which an engine is full (>= 1).
        make_queue: builds one engine's hold queue (release order); FCFS by default.
        book: ``book(request_id, engine_id, now)`` books a request with the host's dispatcher
            (``on_dispatched``) whenever its engine or the time it counts from changes: a
            re-target or applied move (on the target), a release (from its send time) and a
            :meth:`stale_bookings` renewal. The host books the first pick itself. None: no books.
    """

    def __init__(self, num_engines: int, max_in_flight: int,
                 make_queue: Callable[[], RequestQueue] = FcfsQueue,
                 book: Callable[[str, int, float], None] | None = None) -> None:
        if num_engines < 1 or max_in_flight < 1:
            raise ValueError("num_engines and max_in_flight must be >= 1")
        self.max_in_flight = max_in_flight
        self._book = book
        self._queues: list[RequestQueue] = [make_queue() for _ in range(num_engines)]
        self._held: dict[str, Held] = {}
        self._sent: dict[str, int] = {}  # request id -> engine
        self._in_flight = [0] * num_engines
        self._reported = [0] * num_engines  # requests the engine's latest report counts
        self.moves_applied = 0
        self.moves_dropped = 0

    # --- state --------------------------------------------------------------------------------

    def held(self, engine_id: int, now: float) -> list[Held]:
        """Requests held for ``engine_id`` in release order at ``now``, next first."""
        return [waiting.host_ref for waiting in self._queues[engine_id].ordered(now)]

    def held_count(self) -> int:
        return len(self._held)

    def held_on(self, request_id: str) -> int | None:
        """Engine whose queue holds ``request_id`` (None: not held)."""
        held = self._held.get(request_id)
        return None if held is None else held.engine_id

    def in_flight(self, engine_id: int) -> int:
        """Requests sent to ``engine_id`` and not finished."""
        return self._in_flight[engine_id]

    def occupied(self, engine_id: int) -> int:
        """Requests counted against ``engine_id``'s ``max_in_flight``: reported plus in flight."""
        return self._reported[engine_id] + self._in_flight[engine_id]

    def sent_to(self, request_id: str) -> int | None:
        return self._sent.get(request_id)

    # --- transitions ----------------------------------------------------------------------------

    def submit(self, request_id: str, engine_id: int, tokens: int, now: float,
               latest_start_s: float = math.inf, max_new_tokens: int = 0, priority: int = 0) -> bool:
        """A request picked for ``engine_id``: True = send it now (booked as sent), False = held.

        It is sent at once only when the engine has a free slot and nothing is held for it.
        ``tokens`` (prompt), ``max_new_tokens`` and ``priority`` are what the hold queue's policy
        orders by. Raises ValueError for an id that is already held or sent.
        """
        if request_id in self._held or request_id in self._sent:
            raise ValueError(f"request {request_id!r} is already held or sent")
        if not len(self._queues[engine_id]) and self.occupied(engine_id) < self.max_in_flight:
            self._mark_sent(request_id, engine_id)
            return True
        waiting = WaitingRequest(request_id, now, max(0, tokens), max_new_tokens, priority=priority)
        held = Held(waiting, engine_id, latest_start_s, booked_s=now)
        waiting.host_ref = held
        self._held[request_id] = held
        self._queues[engine_id].add(waiting, now)
        return False

    def release(self, healthy: Sequence[bool], now: float) -> list[Release]:
        """Pop healthy engines' queues in their order while they have free slots; now sent."""
        out: list[Release] = []
        for engine_id, queue in enumerate(self._queues):
            if not healthy[engine_id]:
                continue
            while len(queue) and self.occupied(engine_id) < self.max_in_flight:
                held = queue.pop(now).host_ref
                del self._held[held.request_id]
                self._mark_sent(held.request_id, engine_id)
                self._booked(held.request_id, engine_id, now)  # engine reports count it from now
                out.append(Release(held.request_id, engine_id, now - held.held_s))
        return out

    def report_occupancy(self, engine_id: int, requests: int) -> None:
        """The engine's latest report counts ``requests`` (running + waiting) it has taken in."""
        self._reported[engine_id] = max(0, requests)

    def finished(self, request_id: str) -> None:
        """A sent request ended (answered or failed), or the engine's report now counts it; frees
        its in-flight slot. Unknown ids are ignored."""
        engine_id = self._sent.pop(request_id, None)
        if engine_id is not None:
            self._in_flight[engine_id] -= 1

    def withdraw(self, request_id: str) -> Held | None:
        """Take a held request out (its client left, or it has nowhere to go); None if not held."""
        held = self._held.pop(request_id, None)
        if held is not None:
            self._queues[held.engine_id].remove(held.waiting)
        return held

    def retarget(self, request_id: str, engine_id: int, now: float) -> bool:
        """Move a held request into ``engine_id``'s queue, keeping its hold time, and book it there
        at ``now``; False if it is not held."""
        held = self._held.get(request_id)
        if held is None:
            return False
        self._queues[held.engine_id].remove(held.waiting)
        held.engine_id = engine_id
        self._queues[engine_id].add(held.waiting, now)
        self._rebook(held, now)
        return True

    def stale_bookings(self, reported_s: Sequence[float], now: float) -> list[Held]:
        """Re-book at ``now`` the held requests whose booking an engine report claims to cover.

        A dispatcher's load books assume a report taken at ``reported_s[e]`` covers every request
        booked on ``e`` at or before that time; a held request was never sent, so no report counts
        it. Booking it again at ``now`` (> the report times) keeps held requests in the
        dispatcher's view of their engine's load. Returns the re-booked requests.
        """
        out = [held for held in self._held.values() if held.booked_s <= reported_s[held.engine_id]]
        for held in out:
            self._rebook(held, now)
        return out

    def _rebook(self, held: Held, now: float) -> None:
        held.booked_s = now
        self._booked(held.request_id, held.engine_id, now)

    def _booked(self, request_id: str, engine_id: int, now: float) -> None:
        if self._book is not None:
            self._book(request_id, engine_id, now)

    def stranded(self, healthy: Sequence[bool]) -> list[str]:
        """Ids held for engines that are not healthy (the host re-picks or withdraws them)."""
        return [rid for rid, held in self._held.items() if not healthy[held.engine_id]]

    # --- rebalancing ------------------------------------------------------------------------------

    def rebalance(self, rebalancer: SelectiveRebalancer, loads: Sequence[EngineLoad], now: float,
                  work_on: Callable[[str, int], int] | None = None) -> list[Move]:
        """One rebalancer round over the hold queues; returns the moves applied.

        ``loads`` (one per engine, index = engine id, ``healthy`` as the host sees it) are the
        engines' own reports; each engine is shown with its held requests added to its pending
        prefill, so the rebalancer's in-progress base stays the engine's reported prefill.
        """
        queues = []
        for engine_id, load in enumerate(loads):
            waiting = [QueuedRequest(h.request_id, h.tokens, h.latest_start_s)
                       for h in self.held(engine_id, now)]
            shown = dataclasses.replace(load, pending_prefill_tokens=load.pending_prefill_tokens
                                        + sum(r.predicted_tokens for r in waiting))
            queues.append(EngineQueue(shown, waiting))
        moves = rebalancer.propose(queues, now, work_on)
        return self.apply(moves, [load.healthy for load in loads], now)

    def apply(self, moves: Sequence[Move], healthy: Sequence[bool], now: float) -> list[Move]:
        """Apply moves whose request is still held on its source and whose target is healthy (each
        booked on its target at ``now``)."""
        applied = []
        for move in moves:
            held = self._held.get(move.request_id)
            if held is None or held.engine_id != move.source or not healthy[move.target]:
                self.moves_dropped += 1
                continue
            self.retarget(move.request_id, move.target, now)
            applied.append(move)
        self.moves_applied += len(applied)
        return applied

    def _mark_sent(self, request_id: str, engine_id: int) -> None:
        self._sent[request_id] = engine_id
        self._in_flight[engine_id] += 1
