"""Hook: an engine_dispatch dispatcher chooses the data-parallel rank of each request.

REPLACE ``DataParallelController.total_tokens_scheduler`` (``srt/managers/
data_parallel_controller.py``; active when SGLang runs with ``--dp-size N
--load-balance-method total_tokens``, which also keeps SGLang's load-snapshot reader on). Per
request, in the DP controller process:

1. ``maybe_external_dp_rank_routing(req)`` first: a request that names its rank goes there, as in
   every SGLang method;
2. read every rank's latest ``LoadSnapshot`` (shared memory, published by each scheduler) into
   :class:`~engine_dispatch.types.EngineLoad`: ``running = num_running_reqs``, ``waiting =
   num_waiting_reqs``, ``kv_used_tokens = num_used_tokens``, ``kv_capacity_tokens =
   max_total_num_tokens``, ``pending_prefill_tokens = num_waiting_uncached_tokens``; ``healthy`` =
   the rank is active, its status is up and it has a socket. A rank without a snapshot yet is
   reported empty at time 0 (stale). ``reported_s`` is the time up to which the snapshot covers
   dispatched requests, which is *not* its own ``timestamp``: a scheduler publishes after a
   forward pass (``process_batch_result``, ``on_idle``) and takes in new requests only at the top
   of its loop (``ingest_requests``), so a request sent during a forward pass is missing from the
   snapshot published right after it. Every request sent before the *previous* publish was taken
   in before this one, so ``reported_s`` = the rank's previous distinct snapshot ``timestamp``
   (``time.time``, the clock dispatch times use too), or the latest one when nothing was sent to
   the rank between the two (:class:`ReportCoverage`);
3. describe the ``TokenizedGenerateReqInput`` as a :class:`~engine_dispatch.types.DispatchRequest`:
   ``rid``, ``len(input_ids)``, chained hashes of the token ids in ``block_tokens`` blocks,
   ``input_text``, ``session_id`` = the ``x-smg-routing-key`` header's ``routing_key``, else the
   SGLang session id, ``sampling_params.max_new_tokens``; priority 0 (the DP controller does not
   know the scheduler's priority convention);
4. ``dispatcher.pick`` -> ``dispatcher.on_dispatched`` -> ``sock_send(self.workers[rank], req)``,
   or, with late binding (``make_hold``), held in the controller while that rank is full and sent
   later by :meth:`DpDispatchHook.tick` (:mod:`sglang_patches.hooks.dp_late_binding`).

The DP controller never sees requests finish (outputs flow from schedulers to the detokenizer), so
the dispatcher learns about completions only through the load snapshots. Once a snapshot covers a
request (by the rule above), the request is handed over to the engine's report: the hook calls
``dispatcher.on_finished`` for it, which keeps the dispatcher's books to requests no snapshot has
seen yet (bounded memory) while the report counts the rest.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from engine_dispatch.dispatcher import Dispatcher
from engine_dispatch.prompt_hashing import chained_block_hashes
from engine_dispatch.types import DispatchRequest, EngineLoad
from sglang.srt.managers.data_parallel_controller import DataParallelController
from sglang.srt.managers.io_struct import sock_send
from sglang.srt.managers.load_snapshot import LoadSnapshot
from sglang.srt.plugins.hook_registry import HookRegistry, HookType
from sglang_patches.decision_log import DecisionLog
from sglang_patches.hooks.dp_late_binding import ControllerHold

TOTAL_TOKENS_SCHEDULER = (
    "sglang.srt.managers.data_parallel_controller.DataParallelController.total_tokens_scheduler")

logger = logging.getLogger("moesched.sglang")


def engine_loads(controller: DataParallelController,
                 snapshots: Sequence[LoadSnapshot]) -> list[EngineLoad]:
    """One :class:`EngineLoad` per worker slot; ``reported_s`` is the snapshot's own timestamp."""
    by_rank = {snapshot.dp_rank: snapshot for snapshot in snapshots}
    active = set(controller._active_workers)
    loads = []
    for rank, socket in enumerate(controller.workers):
        healthy = rank in active and controller.status[rank] and socket is not None
        snap = by_rank.get(rank)
        if snap is None:
            loads.append(EngineLoad(engine_id=rank, healthy=healthy))
            continue
        loads.append(EngineLoad(
            engine_id=rank, running=snap.num_running_reqs, waiting=snap.num_waiting_reqs,
            kv_used_tokens=snap.num_used_tokens,
            kv_capacity_tokens=max(1, snap.max_total_num_tokens),
            pending_prefill_tokens=snap.num_waiting_uncached_tokens, healthy=healthy,
            reported_s=snap.timestamp))
    return loads


class ReportCoverage:
    """Per rank: when its snapshots last changed, what they cover, and requests not yet covered.

    Args:
        num_ranks: DP worker slots.
    """

    def __init__(self, num_ranks: int) -> None:
        self._published = [0.0] * num_ranks  # latest distinct snapshot timestamp
        self._covered = [0.0] * num_ranks  # the one before it: what the latest snapshot covers
        self._uncovered: list[deque[tuple[float, DispatchRequest]]] = [
            deque() for _ in range(num_ranks)]

    def apply(self, loads: list[EngineLoad]) -> tuple[list[EngineLoad],
                                                      list[tuple[int, DispatchRequest]]]:
        """Loads with ``reported_s`` = coverage time, and the requests that became covered.

        A new snapshot at ``t`` (previous one at ``p``) covers every request sent before ``p``;
        if none was sent in ``(p, t]`` it covers everything sent before ``t``, so idle ranks stay
        fresh and the first snapshot of a rank covers it fully.
        """
        covered_now = []
        adjusted = []
        for load in loads:
            rank, published = load.engine_id, load.reported_s
            if published != self._published[rank]:
                previous, self._published[rank] = self._published[rank], published
                pending = self._uncovered[rank]
                while pending and pending[0][0] <= previous:
                    covered_now.append((rank, pending.popleft()[1]))
                self._covered[rank] = published if not pending or pending[0][0] > published \
                    else previous
            adjusted.append(replace(load, reported_s=self._covered[rank]))
        return adjusted, covered_now

    def dispatched(self, rank: int, request: DispatchRequest, now: float) -> None:
        """Remember a request sent to ``rank`` at ``now`` until a snapshot covers it."""
        self._uncovered[rank].append((now, request))


def dispatch_request(req: object, block_tokens: int) -> DispatchRequest:
    """The :class:`DispatchRequest` view of a ``TokenizedGenerateReqInput`` (or embedding input)."""
    input_ids = req.input_ids or ()
    sampling = getattr(req, "sampling_params", None)
    text = req.input_text if isinstance(req.input_text, str) else None
    return DispatchRequest(
        request_id=str(req.rid),
        prompt_tokens=len(input_ids),
        block_hashes=chained_block_hashes(input_ids, block_tokens),
        text=text,
        session_id=getattr(req, "routing_key", None) or getattr(req, "session_id", None),
        max_new_tokens=(getattr(sampling, "max_new_tokens", None) or 0),
    )


@dataclass
class _ControllerState:
    dispatcher: Dispatcher
    log: DecisionLog
    coverage: ReportCoverage
    counts: list[int]
    hold: ControllerHold | None


class DpDispatchHook:
    """The REPLACE hook, with one dispatcher per ``DataParallelController``.

    Args:
        make_dispatcher: builds a dispatcher for ``num_engines`` worker slots.
        policy_name: for log lines.
        block_tokens: tokens per prefix block of ``block_hashes``.
        make_log: builds the decision log of a controller.
        make_hold: builds a controller's late-binding hold for ``num_ranks`` ranks and its
            dispatcher (None: send at once).
    """

    def __init__(self, make_dispatcher: Callable[[int], Dispatcher], policy_name: str,
                 block_tokens: int, make_log: Callable[[], DecisionLog],
                 make_hold: Callable[[int, Dispatcher], ControllerHold] | None = None) -> None:
        self._make_dispatcher = make_dispatcher
        self.policy_name = policy_name
        self.block_tokens = block_tokens
        self._make_log = make_log
        self._make_hold = make_hold
        self._state: weakref.WeakKeyDictionary[DataParallelController, _ControllerState] = \
            weakref.WeakKeyDictionary()

    def _state_of(self, controller: DataParallelController) -> _ControllerState:
        state = self._state.get(controller)
        if state is None:
            ranks = len(controller.workers)
            dispatcher = self._make_dispatcher(ranks)
            hold = None if self._make_hold is None else self._make_hold(ranks, dispatcher)
            state = _ControllerState(dispatcher, self._make_log(), ReportCoverage(ranks), [0] * ranks, hold)
            self._state[controller] = state
        return state

    def total_tokens_scheduler(self, controller: DataParallelController, req: object) -> None:
        """REPLACE hook body: route ``req`` to the rank our dispatcher picks (or hold it there)."""
        if controller.maybe_external_dp_rank_routing(req):
            return
        state = self._state_of(controller)
        now = time.time()
        engines = self._refresh(controller, state, now)
        request = dispatch_request(req, self.block_tokens)
        rank = state.dispatcher.pick(request, engines, now)
        state.dispatcher.on_dispatched(request, rank, now)
        held = state.hold is not None and not state.hold.submit(req, request, rank, now)
        if not held:
            self._send(controller, state, req, request, rank, now)
        state.log.decision(lambda: self._describe(request, rank, engines, held))
        self._maybe_summary(state)

    def tick(self, controller: DataParallelController) -> bool:
        """Late binding's periodic step (:class:`~sglang_patches.hooks.dp_late_binding.
        LateBindingLoop`): send held requests that now fit; True while any is still held."""
        state = self._state.get(controller)
        if state is None or state.hold is None or not state.hold.held_count():
            return False
        now = time.time()
        engines = self._refresh(controller, state, now)
        for send in state.hold.tick(engines, now):
            self._send(controller, state, send.req, send.request, send.rank, now)
        self._maybe_summary(state)
        return state.hold.held_count() > 0

    def _refresh(self, controller: DataParallelController, state: _ControllerState,
                 now: float) -> list[EngineLoad]:
        """Read the ranks' snapshots; hand requests they now cover over to the reports."""
        engines, covered = state.coverage.apply(
            engine_loads(controller, controller.load_snapshot_reader.read_all()))
        for covered_rank, covered_request in covered:  # the engine's report counts it now
            state.dispatcher.on_finished(covered_request, covered_rank, now, 0)
        if state.hold is not None:
            state.hold.observe(engines, [request.request_id for _, request in covered], now)
        return engines

    @staticmethod
    def _send(controller: DataParallelController, state: _ControllerState, req: object,
              request: DispatchRequest, rank: int, now: float) -> None:
        sock_send(controller.workers[rank], req)
        state.coverage.dispatched(rank, request, now)
        state.counts[rank] += 1

    def _maybe_summary(self, state: _ControllerState) -> None:
        state.log.maybe_summary(lambda: f"moesched dp dispatch [{self.policy_name}] summary: "
                                        f"requests per rank {state.counts}"
                                        + ("" if state.hold is None else f"; {state.hold.summary()}"))

    def _describe(self, request: DispatchRequest, rank: int, engines: list[EngineLoad],
                  held: bool) -> str:
        views = "; ".join(
            f"rank {e.engine_id}: run={e.running} wait={e.waiting} "
            f"pending_prefill={e.pending_prefill_tokens} kv={e.kv_used_fraction:.2f}"
            for e in engines)
        return (f"moesched dp dispatch [{self.policy_name}]: {request.request_id[:8]} "
                f"(prompt={request.prompt_tokens}, blocks={len(request.block_hashes)}, "
                f"session={request.session_id}) -> rank {rank}{' (held: rank full)' if held else ''}; "
                f"reported loads: {views}")

    def register(self) -> None:
        """Register the REPLACE hook with SGLang's ``HookRegistry``."""
        HookRegistry.register(TOTAL_TOKENS_SCHEDULER, self.total_tokens_scheduler,
                              HookType.REPLACE)
