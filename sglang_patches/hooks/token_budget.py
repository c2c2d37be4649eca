"""Hook: the SLO-aware prefill token budget (``request_sched.token_budget``) in SGLang's scheduler.

AFTER ``PrefillAdder.__init__`` (``srt/managers/schedule_policy.py``): SGLang 0.5.23 builds one
``PrefillAdder`` per scheduling pass (``Scheduler._get_new_batch_prefill_raw``) with the pass's
prefill limits, ``rem_input_tokens`` (``--max-prefill-tokens``) and ``rem_chunk_tokens``
(``--chunked-prefill-size``), both already reduced by the decode count under
``--enable-mixed-chunk``. The hook lowers both to :meth:`SloTokenBudget.budget` for the running
batch (``D = len(running_batch.reqs)`` decoding sequences holding ``sum(req.seqlen)`` KV tokens),
so the step the pass forms stays within the TPOT SLO by the step model (or, when no prefill
fits the SLO, the pass's own limits if the model says small chunks cost the decodes more per
prefill token, as a fixed cost per prefilling step makes them). It only ever lowers the
limits SGLang set; the chunked request and the adder's own checks are untouched, and a pass with
nothing decoding keeps SGLang's limits (no TPOT to protect).

The step model must describe the serving hardware: a ``perf_model`` preset or a ``moesched
calibrate`` coefficient file (``[budget] step_model``). A fault inside the hook is logged and
leaves SGLang's limits.
"""

from __future__ import annotations

import logging

from request_sched.token_budget import SloTokenBudget
from sglang.srt.managers.schedule_policy import PrefillAdder
from sglang.srt.plugins.hook_registry import HookRegistry, HookType
from sglang_patches.decision_log import DecisionLog

PREFILL_ADDER_INIT = "sglang.srt.managers.schedule_policy.PrefillAdder.__init__"

logger = logging.getLogger("moesched.sglang")


class TokenBudgetHook:
    """Caps each pass's prefill token limits at the SLO budget of its decode batch.

    Args:
        budget: the budget rule (step model, TPOT SLO, min/max tokens).
        log: decision log (the first passes in full, then a summary per interval).
    """

    def __init__(self, budget: SloTokenBudget, log: DecisionLog) -> None:
        self.budget = budget
        self.log = log
        self.passes = 0
        self.capped = 0

    def after_init(self, result: object, adder: PrefillAdder, *args: object, **kwargs: object) -> None:
        """AFTER hook on ``PrefillAdder.__init__``; returns None (SGLang's result kept)."""
        try:
            reqs = adder.running_batch.reqs if adder.running_batch is not None else []
            self.passes += 1
            if not reqs:
                return
            decode_seqs, kv_tokens = len(reqs), sum(req.seqlen for req in reqs)
            before = (adder.rem_input_tokens, adder.rem_chunk_tokens)
            limit = min(t for t in before if t is not None)
            tokens = self.budget.budget(decode_seqs, kv_tokens, limit=limit)
            adder.rem_input_tokens = min(adder.rem_input_tokens, tokens)
            if adder.rem_chunk_tokens is not None:
                adder.rem_chunk_tokens = min(adder.rem_chunk_tokens, tokens)
            if (adder.rem_input_tokens, adder.rem_chunk_tokens) != before:
                self.capped += 1
                self.log.decision(lambda: (
                    f"moesched token budget: {decode_seqs} decoding ({kv_tokens} KV tokens) -> "
                    f"prefill limit {before[0]}/{before[1]} -> {adder.rem_input_tokens}/"
                    f"{adder.rem_chunk_tokens} tokens (TPOT SLO {self.budget.tpot_slo_s * 1e3:g} ms)"))
            self.log.maybe_summary(lambda: f"moesched token budget summary: passes={self.passes} "
                                           f"capped={self.capped}")
        except Exception:  # noqa: BLE001 - a plugin fault must not stop the scheduler
            logger.exception("moesched token budget hook failed; SGLang's prefill limits kept")

    def register(self) -> None:
        """Register the AFTER hook with SGLang's ``HookRegistry``."""
        HookRegistry.register(PREFILL_ADDER_INIT, self.after_init, HookType.AFTER)
