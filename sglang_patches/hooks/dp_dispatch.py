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
   max_total_num_tokens``, ``pending_prefill_tokens = num_waiting_uncached_tokens``,
   ``reported_s = timestamp`` (``time.time``); ``healthy`` = the rank is active, its status is up
   and it has a socket. A rank without a snapshot yet is reported empty at time 0 (stale);
3. describe the ``TokenizedGenerateReqInput`` as a :class:`~engine_dispatch.types.DispatchRequest`:
   ``rid``, ``len(input_ids)``, chained hashes of the token ids in ``block_tokens`` blocks,
   ``input_text``, ``session_id`` = the ``x-smg-routing-key`` header's ``routing_key``, else the
   SGLang session id, ``sampling_params.max_new_tokens``; priority 0 (the DP controller does not
   know the scheduler's priority convention);
4. ``dispatcher.pick`` -> ``sock_send(self.workers[rank], req)`` -> ``dispatcher.on_dispatched``.

The DP controller never sees requests finish (outputs flow from schedulers to the detokenizer), so
the dispatcher learns about completions only through the load snapshots.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Sequence

from engine_dispatch.dispatcher import Dispatcher
from engine_dispatch.prompt_hashing import chained_block_hashes
from engine_dispatch.types import DispatchRequest, EngineLoad
from sglang.srt.managers.data_parallel_controller import DataParallelController
from sglang.srt.managers.io_struct import sock_send
from sglang.srt.managers.load_snapshot import LoadSnapshot
from sglang.srt.plugins.hook_registry import HookRegistry, HookType
from sglang_patches.decision_log import DecisionLog

TOTAL_TOKENS_SCHEDULER = (
    "sglang.srt.managers.data_parallel_controller.DataParallelController.total_tokens_scheduler")

logger = logging.getLogger("moesched.sglang")


def engine_loads(controller: DataParallelController,
                 snapshots: Sequence[LoadSnapshot]) -> list[EngineLoad]:
    """One :class:`EngineLoad` per worker slot of ``controller`` (mapping in the module docstring)."""
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


class DpDispatchHook:
    """The REPLACE hook, with one dispatcher per ``DataParallelController``.

    Args:
        make_dispatcher: builds a dispatcher for ``num_engines`` worker slots.
        policy_name: for log lines.
        block_tokens: tokens per prefix block of ``block_hashes``.
        make_log: builds the decision log of a controller.
    """

    def __init__(self, make_dispatcher: Callable[[int], Dispatcher], policy_name: str,
                 block_tokens: int, make_log: Callable[[], DecisionLog]) -> None:
        self._make_dispatcher = make_dispatcher
        self.policy_name = policy_name
        self.block_tokens = block_tokens
        self._make_log = make_log
        self._state: weakref.WeakKeyDictionary[DataParallelController,
                                               tuple[Dispatcher, DecisionLog, list[int]]] = \
            weakref.WeakKeyDictionary()

    def _state_of(self, controller: DataParallelController) -> tuple[Dispatcher, DecisionLog,
                                                                     list[int]]:
        state = self._state.get(controller)
        if state is None:
            state = (self._make_dispatcher(len(controller.workers)), self._make_log(),
                     [0] * len(controller.workers))
            self._state[controller] = state
        return state

    def total_tokens_scheduler(self, controller: DataParallelController, req: object) -> None:
        """REPLACE hook body: route ``req`` to the rank our dispatcher picks."""
        if controller.maybe_external_dp_rank_routing(req):
            return
        dispatcher, log, counts = self._state_of(controller)
        now = time.time()
        engines = engine_loads(controller, controller.load_snapshot_reader.read_all())
        request = dispatch_request(req, self.block_tokens)
        rank = dispatcher.pick(request, engines, now)
        sock_send(controller.workers[rank], req)
        dispatcher.on_dispatched(request, rank, now)
        counts[rank] += 1
        log.decision(lambda: self._describe(request, rank, engines))
        log.maybe_summary(lambda: f"moesched dp dispatch [{self.policy_name}] summary: "
                                  f"requests per rank {counts}")

    def _describe(self, request: DispatchRequest, rank: int, engines: list[EngineLoad]) -> str:
        views = "; ".join(
            f"rank {e.engine_id}: run={e.running} wait={e.waiting} "
            f"pending_prefill={e.pending_prefill_tokens} kv={e.kv_used_fraction:.2f}"
            for e in engines)
        return (f"moesched dp dispatch [{self.policy_name}]: {request.request_id[:8]} "
                f"(prompt={request.prompt_tokens}, blocks={len(request.block_hashes)}, "
                f"session={request.session_id}) -> rank {rank}; reported loads: {views}")

    def register(self) -> None:
        """Register the REPLACE hook with SGLang's ``HookRegistry``."""
        HookRegistry.register(TOTAL_TOKENS_SCHEDULER, self.total_tokens_scheduler,
                              HookType.REPLACE)
