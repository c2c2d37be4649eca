"""Hook: SGLang's admission headroom for future output tokens, learnt from finished requests.

AFTER ``mem_cache.common.release_kv_cache`` (once per request whose KV is released, in the
scheduler process): a finished, not aborted request's ``len(output_ids)`` goes to a
:class:`request_sched.headroom.LearntHeadroom`; when that recomputes its quantile, the module
global ``sglang.srt.managers.schedule_policy.CLIP_MAX_NEW_TOKENS`` is set to it. SGLang 0.5.23
reads that global at call time wherever ``PrefillAdder`` sizes the headroom (the running
requests' offset, each candidate's budget check, the in-pass reservations; 6 uses, all in
``schedule_policy.py``), so admission keeps ``min(remaining max_new_tokens, learnt clip)`` per
request free instead of ``min(..., 4096)``. Generation itself is untouched: a request still runs
to its own ``max_new_tokens``; if the KV cache runs out, SGLang retracts as it always does.

One :class:`LearntHeadroom` per process (a scheduler process serves one DP rank). Every change of
the clip is one log line (``moesched headroom: CLIP_MAX_NEW_TOKENS 4096 -> 512 (q=0.95 over 64
finished)``); a fault inside the hook is logged and leaves the clip where it was.
"""

from __future__ import annotations

import logging

from request_sched.headroom import LearntHeadroom
from sglang.srt.managers import schedule_policy
from sglang.srt.managers.schedule_batch import FINISH_ABORT, Req
from sglang.srt.plugins.hook_registry import HookRegistry, HookType

RELEASE_KV_CACHE = "sglang.srt.mem_cache.common.release_kv_cache"

logger = logging.getLogger("moesched.sglang")


class HeadroomHook:
    """Feeds finished requests to ``headroom`` and keeps SGLang's clip equal to its value."""

    def __init__(self, headroom: LearntHeadroom) -> None:
        self.headroom = headroom
        self.finished = 0

    def after_release(self, result: object, req: Req, *args: object, **kwargs: object) -> None:
        """AFTER hook on ``release_kv_cache(req, tree_cache, ...)``; returns None (result kept)."""
        try:
            if not req.finished() or isinstance(req.finished_reason, FINISH_ABORT):
                return
            self.finished += 1
            if self.headroom.observe(len(req.output_ids)):
                old, new = schedule_policy.CLIP_MAX_NEW_TOKENS, self.headroom.tokens
                if new != old:
                    schedule_policy.CLIP_MAX_NEW_TOKENS = new
                    logger.info("moesched headroom: CLIP_MAX_NEW_TOKENS %d -> %d (q=%g over %d finished)",
                                old, new, self.headroom.quantile, self.finished)
        except Exception:  # noqa: BLE001 - a plugin fault must not stop the scheduler
            logger.exception("moesched headroom hook failed; the clip stays %d",
                             schedule_policy.CLIP_MAX_NEW_TOKENS)

    def register(self) -> None:
        """Register the AFTER hook with SGLang's ``HookRegistry``."""
        HookRegistry.register(RELEASE_KV_CACHE, self.after_release, HookType.AFTER)
