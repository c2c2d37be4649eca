"""Hook: moesched's :class:`~request_sched.preemption.PreemptionRule` decides SGLang's preemptions.

AROUND ``PrefillAdder.preempt_to_schedule`` (``srt/managers/schedule_policy.py``). SGLang 0.5.23
calls it from ``Scheduler.get_new_batch_prefill`` for each waiting request, in waiting-list order
(which the request-order hook has set), once the running batch is full, but only when
``--enable-priority-scheduling`` is on (and ``--disable-priority-preemption`` is not): stock SGLang
then preempts running requests of a lower *priority value*, by more than
``--priority-scheduling-preemption-threshold``. With all requests at the default priority it never
preempts. This hook replaces that choice, and only that choice:

1. describe the candidate (its first enqueue time, which the request-order hook kept across
   retractions) and every running request that is not finished and not already preempted in this
   pass (``Req.output_ids`` = its generated tokens; waited = now - its first enqueue time;
   ``Req.retraction_count`` = times it has been retracted or preempted);
2. ask the rule for victims (size ratio or starvation bound; never an overdue request; most
   remaining steps first);
3. take victims until the candidate's KV need is covered, counted as SGLang counts it (the
   candidate's extend tokens + clipped ``max_new_tokens`` + request-slot reserve -
   ``rem_total_tokens``, each victim giving back its reserved future tokens);
4. carry it out with SGLang's own primitives, as SGLang's method does: ``ScheduleBatch.release_req``
   (frees the KV, ``Req.reset_for_retract``), ``filter_batch``, ``adder.preempt_list`` (the
   scheduler puts those back into the waiting queue, where they recompute their prompt and output
   when admitted again).

Every preemption is logged: ``moesched preempt: <candidate> (...) takes the slot of <victim>
(...)``. The request-order hook must be active in the same process (it knows each request's first
enqueue time); without it, or with SGLang's own policy not ``fcfs``, SGLang's method runs
unchanged. One scheduler per process (SGLang's layout: a process per TP/DP rank), so the hook
uses the single orderer of its process.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable

from request_sched.preemption import PreemptionRule, RunningJob
from request_sched.queue import RequestQueue
from sglang.srt.managers.schedule_batch import Req
from sglang.srt.managers.schedule_policy import CLIP_MAX_NEW_TOKENS, PrefillAdder
from sglang.srt.plugins.hook_registry import HookRegistry, HookType
from sglang_patches.decision_log import DecisionLog
from sglang_patches.hooks.request_order import RequestOrderHooks, WaitingQueueOrderer, describe_req

PREEMPT_TO_SCHEDULE = "sglang.srt.managers.schedule_policy.PrefillAdder.preempt_to_schedule"

logger = logging.getLogger("moesched.sglang")


def tokens_short(adder: PrefillAdder, req: Req) -> float:
    """KV tokens the adder lacks to admit ``req`` (<= 0: it fits), as SGLang's method counts."""
    return (len(req.full_untruncated_fill_ids) - req.prefix_len
            + min(req.sampling_params.max_new_tokens, CLIP_MAX_NEW_TOKENS)
            + adder._request_slot_reserve_for_req(req) - adder.rem_total_tokens)


def preempt(adder: PrefillAdder, victims: list[Req]) -> None:
    """Release ``victims`` from the running batch and hand them to the scheduler for requeueing."""
    chosen = set(victims)
    keep: list[int] = []
    released = 0
    batch = adder.running_batch
    for i, running in enumerate(batch.reqs):
        if running in chosen:
            adder.memory_budget.total_offset -= adder._get_running_request_total_token_offset(
                running)
            released += 1
            batch.release_req(i, len(batch.reqs) - released)
        else:
            keep.append(i)
    batch.filter_batch(keep_indices=keep)
    adder.preempt_list.extend(victims)


def _describe(req: Req, waited_s: float, remaining_steps: float) -> str:
    return (f"{req.rid[:8]}(prompt={len(req.origin_input_ids)} generated={len(req.output_ids)} "
            f"waited={waited_s:.2f}s steps_left~{remaining_steps:.0f})")


class PreemptionHook:
    """The AROUND hook, with one rule per request-order orderer.

    Args:
        request_hooks: the active request-order hooks (their orderers know enqueue times).
        make_rule: builds the rule for an orderer's queue (its predictor and starvation bound).
        log: periodic summary (checks = times SGLang asked, i.e. a request met a full batch).
    """

    def __init__(self, request_hooks: RequestOrderHooks,
                 make_rule: Callable[[RequestQueue], PreemptionRule], log: DecisionLog) -> None:
        self._request_hooks = request_hooks
        self._make_rule = make_rule
        self.log = log
        self.checks = 0
        self._rules: weakref.WeakKeyDictionary[WaitingQueueOrderer, PreemptionRule] = \
            weakref.WeakKeyDictionary()
        self.preemptions = 0

    def preempt_to_schedule(self, original: Callable, adder: PrefillAdder, req: Req) -> bool:
        """AROUND hook: our victims when this process has an orderer, else SGLang's choice."""
        orderers = list(self._request_hooks.orderers.items())
        if len(orderers) != 1:
            return original(adder, req)
        policy, orderer = orderers[0]
        rule = self._rules.get(orderer)
        if rule is None:
            rule = self._rules[orderer] = self._make_rule(orderer.queue)
        self.checks += 1
        self.log.maybe_summary(lambda: f"moesched preempt summary: checks={self.checks} "
                                       f"preemptions={self.preemptions}")
        try:
            return self._preempt(adder, req, policy, orderer.first_enqueue_s, rule)
        except Exception:  # a plugin fault must not stop the scheduler: no preemption this time
            logger.exception("moesched preempt failed; request %s waits", req.rid)
            return False

    def _preempt(self, adder: PrefillAdder, req: Req, policy: object,
                 first_enqueue_s: Callable[[Req], float | None], rule: PreemptionRule) -> bool:
        now = time.perf_counter()
        enqueue_s = first_enqueue_s(req) or req.time_stats.wait_queue_entry_time or now
        candidate = describe_req(req, policy, enqueue_s)
        running = [r for r in adder.running_batch.reqs
                   if r not in adder.preempt_list and not r.finished()]
        jobs = []
        for r in running:
            described = describe_req(r, policy, first_enqueue_s(r) or now)
            jobs.append(RunningJob(described, now - described.enqueue_s, r.retraction_count))
        waited = now - enqueue_s
        short = tokens_short(adder, req)
        victims: list[int] = []
        for i in rule.victims(candidate, waited, jobs):
            victims.append(i)
            short -= adder._get_running_request_total_token_offset(running[i])
            if short <= 0:
                break
        if not victims or short > 0:
            return False
        preempt(adder, [running[i] for i in victims])
        self.preemptions += 1
        reason = "overdue" if rule.is_overdue(waited) else f"size ratio >= {rule.size_ratio:g}"
        logger.info("moesched preempt #%d (%s): %s takes the slot of %s", self.preemptions, reason,
                    _describe(req, waited, rule.candidate_steps(candidate)),
                    ", ".join(_describe(running[i], jobs[i].waited_s,
                                        rule.remaining_steps(jobs[i].request)) for i in victims))
        return True

    def register(self) -> None:
        """Register the hook with SGLang's ``HookRegistry`` (applied by ``load_plugins``)."""
        HookRegistry.register(PREEMPT_TO_SCHEDULE, self.preempt_to_schedule, HookType.AROUND)
