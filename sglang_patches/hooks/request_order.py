"""Hook: a request_sched policy orders each SGLang scheduler's waiting queue.

AROUND ``SchedulePolicy.calc_priority`` (``srt/managers/schedule_policy.py``): SGLang's own method
runs first (it keeps its side effects: fast prefix matching, LRU touches, and its
``--enable-priority-scheduling`` sort), then, when SGLang's policy is ``fcfs`` (its default, the
only one moesched takes over), the waiting list is rewritten in the order of our
:class:`~request_sched.queue.RequestQueue`. Admission (``PrefillAdder``) walks the list in order,
so list order is admission order. SGLang's policy enum is never touched.

Per scheduling pass, for the waiting list of ``n`` requests:

1. prefix-match the requests whose ``num_matched_prefix_tokens`` SGLang did not refresh (all of
   them when ``n <= prefix_match_max``, else only newly seen ones, at most ``prefix_match_max``),
   with SGLang's own ``match_kv_cache``, as its ``lpm`` policy does;
2. describe each ``Req`` as a :class:`~request_sched.types.WaitingRequest` (below) and sync the
   queue: add new requests, re-key changed ones (remove + add), remove the ones that left;
3. ``waiting_queue[:] = queue.ordered(now)``.

``Req`` -> ``WaitingRequest``: ``rid``; ``enqueue_s`` = ``time_stats.wait_queue_entry_time`` when
first seen (``time.perf_counter`` seconds; kept across retraction, where SGLang re-stamps it);
``prompt_tokens`` = ``len(origin_input_ids)``; ``cached_tokens`` = ``num_matched_prefix_tokens``;
``max_new_tokens`` = ``sampling_params.max_new_tokens``; ``generated_tokens`` =
``len(output_ids)``; ``priority`` = SGLang's priority with the sign flipped under
``--schedule-low-priority-values-first`` (ours: larger is more urgent), 0 without
``--enable-priority-scheduling``, clamped to +-``PRIORITY_LIMIT`` so SGLang's "no priority"
sentinel (+-``sys.maxsize``) stays a finite class.

Finished requests feed the policy's output-length predictor through an AFTER hook on
``mem_cache.common.release_kv_cache`` (called once when a request's KV is released; aborted
requests are skipped).
"""

from __future__ import annotations

import inspect
import logging
import time
import weakref
from collections.abc import Callable

from request_sched.queue import RequestQueue
from request_sched.types import WaitingRequest
from sglang.srt.managers.schedule_batch import FINISH_ABORT, Req
from sglang.srt.managers.schedule_policy import CacheAgnosticPolicy, SchedulePolicy
from sglang.srt.mem_cache.common import match_kv_cache
from sglang.srt.plugins.hook_registry import HookRegistry, HookType
from sglang.srt.runtime_context import get_disagg
from sglang_patches.decision_log import DecisionLog

CALC_PRIORITY = "sglang.srt.managers.schedule_policy.SchedulePolicy.calc_priority"
RELEASE_KV_CACHE = "sglang.srt.mem_cache.common.release_kv_cache"
PRIORITY_LIMIT = 2**20
_CALC_PRIORITY_SIGNATURE = inspect.signature(SchedulePolicy.calc_priority)

logger = logging.getLogger("moesched.sglang")


def _our_priority(req: Req, policy: SchedulePolicy) -> int:
    if not policy.enable_priority_scheduling or req.priority is None:
        return 0
    value = -req.priority if policy.schedule_low_priority_values_first else req.priority
    return max(-PRIORITY_LIMIT, min(PRIORITY_LIMIT, value))


def describe_req(req: Req, policy: SchedulePolicy, enqueue_s: float) -> WaitingRequest:
    """The :class:`WaitingRequest` view of an SGLang ``Req`` (mapping in the module docstring)."""
    return WaitingRequest(
        request_id=req.rid,
        enqueue_s=enqueue_s,
        prompt_tokens=len(req.origin_input_ids),
        max_new_tokens=req.sampling_params.max_new_tokens,
        cached_tokens=req.num_matched_prefix_tokens,
        generated_tokens=len(req.output_ids),
        priority=_our_priority(req, policy),
    )


class WaitingQueueOrderer:
    """Keeps one scheduler's :class:`RequestQueue` in step with its waiting list and applies its order.

    Args:
        queue: the policy's queue (one per SGLang ``SchedulePolicy``).
        policy_name: for log lines.
        prefix_match_max: requests prefix-matched per pass (see module docstring).
        log: where decisions and summaries go.
    """

    def __init__(self, queue: RequestQueue, policy_name: str, prefix_match_max: int,
                 log: DecisionLog) -> None:
        self.queue = queue
        self.policy_name = policy_name
        self.prefix_match_max = prefix_match_max
        self.log = log
        self._queued: dict[str, tuple[tuple[int, int, int, int], WaitingRequest]] = {}
        self._seen: weakref.WeakKeyDictionary[Req, WaitingRequest] = weakref.WeakKeyDictionary()
        self._processed_tokens = 0
        self.passes = 0
        self.reordered_passes = 0  # passes whose head differs from SGLang's own order
        self.finished_fed = 0

    def _match_prefixes(self, policy: SchedulePolicy, waiting_queue: list[Req]) -> None:
        if getattr(policy.tree_cache, "disable", True) or policy.waiting_queue_prefix_matched(
                waiting_queue):
            return
        match_all = len(waiting_queue) <= self.prefix_match_max
        budget = self.prefix_match_max
        for req in waiting_queue:
            if budget == 0:
                break
            if match_all or req.rid not in self._queued:
                match_kv_cache(req, policy.tree_cache)
                budget -= 1

    def _sync(self, policy: SchedulePolicy, waiting_queue: list[Req], now: float) -> None:
        """Add new requests, re-key changed ones, drop those that left (O(n) dict work)."""
        present: set[str] = set()
        queued = self._queued
        use_priority = policy.enable_priority_scheduling
        for req in waiting_queue:
            rid = req.rid
            present.add(rid)
            fields = (len(req.origin_input_ids), req.num_matched_prefix_tokens, len(req.output_ids),
                      _our_priority(req, policy) if use_priority else 0)
            entry = queued.get(rid)
            if entry is not None:
                if entry[0] == fields:
                    continue
                self.queue.remove(entry[1])
            before = self._seen.get(req)
            enqueue_s = before.enqueue_s if before else (req.time_stats.wait_queue_entry_time or now)
            described = describe_req(req, policy, enqueue_s)
            self.queue.add(described, now)
            queued[rid] = (fields, described)
            self._seen[req] = described
        if len(queued) > len(present):
            for rid in [rid for rid in queued if rid not in present]:
                self.queue.remove(queued.pop(rid)[1])

    def order(self, policy: SchedulePolicy, waiting_queue: list[Req],
              processed_tokens: int = 0) -> None:
        """Rewrite ``waiting_queue`` in the policy's admission order.

        ``processed_tokens`` is SGLang's running count of prefill tokens computed (the queue
        hears the increase since the last pass through ``on_prefill``).
        """
        now = time.perf_counter()
        if processed_tokens > self._processed_tokens:
            self.queue.on_prefill(processed_tokens - self._processed_tokens)
            self._processed_tokens = processed_tokens
        self._match_prefixes(policy, waiting_queue)
        self._sync(policy, waiting_queue, now)
        sglang_head = waiting_queue[0].rid if waiting_queue else None
        by_rid = {req.rid: req for req in waiting_queue}
        ordered = self.queue.ordered(now)
        if len(ordered) != len(waiting_queue) or len(by_rid) != len(waiting_queue):
            raise RuntimeError(f"waiting list of {len(waiting_queue)} requests ({len(by_rid)} "
                               f"distinct rids) does not match the queue's {len(ordered)}")
        waiting_queue[:] = [by_rid[r.request_id] for r in ordered]
        self.passes += 1
        if ordered and ordered[0].request_id != sglang_head:
            self.reordered_passes += 1
        self.log.decision(lambda: self._describe_order(ordered, sglang_head, now))
        self.log.maybe_summary(lambda: self._summary(ordered, now))

    def first_enqueue_s(self, req: Req) -> float | None:
        """When ``req`` first entered this waiting queue (``perf_counter`` s), if this orderer saw it."""
        described = self._seen.get(req)
        return described.enqueue_s if described is not None else None

    def on_finished(self, req: Req) -> None:
        """Feed a finished request's output length to the policy (if this scheduler saw it)."""
        described = self._seen.get(req)
        if described is not None:
            self.queue.on_finished(described, len(req.output_ids))
            self.finished_fed += 1

    def _describe_order(self, ordered: list[WaitingRequest], sglang_head: str | None,
                        now: float) -> str:
        head = ", ".join(
            f"{r.request_id[:8]}(prompt={r.prompt_tokens} cached={r.cached_tokens} "
            f"max_new={r.max_new_tokens} waited={now - r.enqueue_s:.2f}s)" for r in ordered[:4])
        return (f"moesched request order [{self.policy_name}] pass {self.passes}: "
                f"{len(ordered)} waiting; admit first: {head}; SGLang's own order would admit "
                f"{(sglang_head or '-')[:8]}")

    def _summary(self, ordered: list[WaitingRequest], now: float) -> str:
        oldest = max((now - r.enqueue_s for r in ordered), default=0.0)
        return (f"moesched request order [{self.policy_name}] summary: passes={self.passes} "
                f"reordered={self.reordered_passes} (head differs from SGLang's own order) "
                f"waiting={len(ordered)} oldest_wait={oldest:.2f}s "
                f"finished_fed_to_predictor={self.finished_fed}")


class RequestOrderHooks:
    """The two hook functions, with one :class:`WaitingQueueOrderer` per ``SchedulePolicy``.

    Args:
        make_orderer: builds the orderer for a new ``SchedulePolicy``.
    """

    def __init__(self, make_orderer: Callable[[], WaitingQueueOrderer]) -> None:
        self._make_orderer = make_orderer
        self.orderers: weakref.WeakKeyDictionary[SchedulePolicy, WaitingQueueOrderer] = \
            weakref.WeakKeyDictionary()
        self._warned_other_policy = False

    def calc_priority(self, original: Callable, policy: SchedulePolicy, waiting_queue: list[Req],
                      *args, **kwargs) -> None:
        """AROUND hook: SGLang's ordering, then ours when SGLang's policy is fcfs."""
        original(policy, waiting_queue, *args, **kwargs)
        if policy.policy is not CacheAgnosticPolicy.FCFS:
            if not self._warned_other_policy:
                self._warned_other_policy = True
                logger.warning("moesched request order: --schedule-policy %s is SGLang's own; "
                               "moesched orders only the fcfs queue, leaving this one alone",
                               policy.policy.value)
            return
        if get_disagg().disaggregation_mode == "decode":
            return  # a decode engine's queue carries no prefill work to order
        orderer = self.orderers.get(policy)
        if orderer is None:
            orderer = self.orderers[policy] = self._make_orderer()
        bound = _CALC_PRIORITY_SIGNATURE.bind(policy, waiting_queue, *args, **kwargs)
        try:
            orderer.order(policy, waiting_queue, bound.arguments.get("processed_tokens", 0))
        except Exception:  # a plugin fault must not stop the scheduler: keep SGLang's order
            logger.exception("moesched request order failed; SGLang's order kept, state reset")
            del self.orderers[policy]

    def after_release(self, result: object, req: Req, *args, **kwargs) -> None:
        """AFTER hook on ``release_kv_cache(req, tree_cache, *, checkpoint)``."""
        if req.finished() and not isinstance(req.finished_reason, FINISH_ABORT):
            for orderer in self.orderers.values():
                orderer.on_finished(req)

    def register(self) -> None:
        """Register both hooks with SGLang's ``HookRegistry`` (applied by ``load_plugins``)."""
        HookRegistry.register(CALC_PRIORITY, self.calc_priority, HookType.AROUND)
        HookRegistry.register(RELEASE_KV_CACHE, self.after_release, HookType.AFTER)
