"""Late binding in SGLang's DP controller: hold requests while their rank is full, rebalance them.

With ``[dp_controller] late_binding = true`` (and the plugin's ``[dispatch]``), the
:class:`~sglang_patches.hooks.dp_dispatch.DpDispatchHook` hands each request, after its dispatcher
picked a rank, to this controller's :class:`ControllerHold` instead of sending it at once:

* **Full.** A rank is full when the requests its latest load snapshot counts (``num_running_reqs +
  num_waiting_reqs``) plus the requests sent to it that no snapshot counts yet reach
  ``hold.max_in_flight``. The controller never sees a request finish, so both parts come from the
  snapshots (:class:`~engine_dispatch.late_binding.HoldQueues` with ``report_occupancy``; a request
  leaves "in flight" when :class:`~sglang_patches.hooks.dp_dispatch.ReportCoverage` says a snapshot
  covers it). A request is sent at once when its rank has room and nothing is held ahead of it.
* **Held** requests wait in the controller, one queue per rank, as the tokenized SGLang objects,
  released in the order of ``make_queue``'s policy: by default the request policy the ranks run
  (``[request]``; with a FIFO in front of them, sjf-aging inside the ranks would only order the
  few requests each rank is given).
  They stay booked with the dispatcher on their rank (re-booked whenever a newer snapshot would be
  taken to cover them), so new requests see them as load.
* **Tick** (every ``hold.tick_s`` while anything is held, on the controller's own thread, see
  :func:`late_binding_event_loop`): re-pick held requests whose rank went inactive, run a
  :class:`~engine_dispatch.rebalance.SelectiveRebalancer` round when due (moves re-booked on their
  target), then send queue heads to ranks with room, each re-booked at its send time.

Everything runs on the controller's one thread (ZeroMQ sockets are not thread-safe and SGLang sends
health checks and control messages on the same worker sockets), so a move cannot race a send: a
request is sent once, to the rank it is held on at that instant. Held requests leave only by being
sent: the controller has no way to drop a request the tokenizer is waiting for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine_dispatch.dispatcher import Dispatcher
from engine_dispatch.late_binding import HoldQueues, LateBindingConfig
from engine_dispatch.rebalance import SelectiveRebalancer
from engine_dispatch.types import DispatchRequest, EngineLoad
from request_sched.policies.fcfs import FcfsQueue
from request_sched.queue import RequestQueue
from sglang.srt.managers.data_parallel_controller import DataParallelController
from sglang.srt.managers.io_struct import sock_recv
from sglang.srt.plugins.hook_registry import HookRegistry, HookType
from sglang_patches.hooks.dp_idle import EVENT_LOOP


@dataclass(frozen=True)
class Send:
    """``req`` (the tokenized SGLang object) is to be sent to ``rank`` now."""

    rank: int
    req: object
    request: DispatchRequest


class ControllerHold:
    """One DP controller's hold queues, held SGLang requests and rebalancer.

    Args:
        config: ``[hold]`` and ``[rebalance]`` settings.
        rebalancer: prices moves with ``config.hold.step_model``.
        num_ranks: DP worker slots.
        dispatcher: the controller's dispatcher (picks for stranded requests; holds' bookings).
        make_queue: builds one rank's hold queue (its release order).
    """

    def __init__(self, config: LateBindingConfig, rebalancer: SelectiveRebalancer, num_ranks: int,
                 dispatcher: Dispatcher, make_queue: Callable[[], RequestQueue] = FcfsQueue) -> None:
        self.rebalancer = rebalancer
        self.dispatcher = dispatcher
        self.queues = HoldQueues(num_ranks, config.hold.max_in_flight, make_queue, book=self._book)
        self._held: dict[str, tuple[object, DispatchRequest]] = {}
        self.held_total = 0
        self.moved = 0
        self.repicked = 0

    def held_count(self) -> int:
        return self.queues.held_count()

    def submit(self, req: object, request: DispatchRequest, rank: int, now: float) -> bool:
        """True: send ``req`` to ``rank`` now; False: it is held (sent later by :meth:`tick`)."""
        if self.queues.submit(request.request_id, rank, request.prompt_tokens, now,
                              max_new_tokens=request.max_new_tokens):
            return True
        self._held[request.request_id] = (req, request)
        self.held_total += 1
        return False

    def observe(self, engines: Sequence[EngineLoad], covered: Sequence[str], now: float) -> None:
        """New snapshots: ``covered`` request ids are now counted by their rank's snapshot;
        held requests the snapshots would be taken to cover are re-booked at ``now``."""
        for request_id in covered:
            self.queues.finished(request_id)
        for engine in engines:
            self.queues.report_occupancy(engine.engine_id, engine.running + engine.waiting)
        self.queues.stale_bookings([e.reported_s for e in engines], now)

    def tick(self, engines: Sequence[EngineLoad], now: float) -> list[Send]:
        """Re-pick stranded requests, rebalance when due, and return the requests to send now
        (each booked on its rank from now by the hold queues)."""
        healthy = [engine.healthy for engine in engines]
        if any(healthy):
            for request_id in self.queues.stranded(healthy):
                target = self.dispatcher.pick(self._held[request_id][1], engines, now)
                self.queues.retarget(request_id, target, now)
                self.repicked += 1
        if self.rebalancer.due(now):
            self.moved += len(self.queues.rebalance(self.rebalancer, engines, now))
        sends = []
        for release in self.queues.release(healthy, now):
            req, request = self._held.pop(release.request_id)
            sends.append(Send(release.engine_id, req, request))
        return sends

    def _book(self, request_id: str, rank: int, now: float) -> None:
        """``HoldQueues``' booking callback."""
        self.dispatcher.on_dispatched(self._held[request_id][1], rank, now)

    def summary(self) -> str:
        return (f"held {self.held_total} (now {self.held_count()}), moved {self.moved}, "
                f"re-picked {self.repicked}, moves dropped {self.queues.moves_dropped}")


class LateBindingLoop:
    """REPLACE hook of ``DataParallelController.event_loop`` while late binding is on.

    Like :func:`sglang_patches.hooks.dp_idle.blocking_event_loop` it waits on the tokenizer socket
    instead of spinning, but while requests are held it waits at most ``tick_s`` and then calls
    ``tick(controller)`` (which sends what now fits and returns whether anything is still held).

    Args:
        tick: the dispatch hook's tick; True while requests are held.
        tick_s: longest wait while requests are held (seconds, > 0).
    """

    def __init__(self, tick: Callable[[DataParallelController], bool], tick_s: float) -> None:
        self._tick = tick
        self._tick_ms = max(1, round(tick_s * 1000))

    def event_loop(self, controller: DataParallelController) -> None:
        """Receive and dispatch each message; tick after each and every ``tick_s`` while holding."""
        socket = controller.recv_from_tokenizer
        holding = False
        while True:
            with controller.soft_watchdog.disable():
                ready = socket.poll(self._tick_ms if holding else None)
            if ready:
                controller._request_dispatcher(sock_recv(socket))
            holding = self._tick(controller)
            controller.soft_watchdog.feed()

    def register(self) -> None:
        """Register the REPLACE hook with SGLang's ``HookRegistry``."""
        HookRegistry.register(EVENT_LOOP, self.event_loop, HookType.REPLACE)
