"""SGLang 0.5.23's ``hrrn``: highest response ratio next, with token-based aging.

Definition (``srt/managers/schedule_policy.py``, ``SchedulePolicy._sort_by_hrrn``): the scheduler
keeps a counter of prefill tokens computed so far (``processed_tokens_counter``, increased by each
batch's ``extend_num_tokens``) and snapshots it into ``req.arrival_processed_tokens`` whenever the
request enters the waiting list (also after a retraction). The list is sorted ascending by::

    (-inf, rid)                               if uncached == 0   (no prefill work: drain first)
    (-(processed - arrival_processed) / uncached, rid)           otherwise
    (+inf, rid)                               if deprioritized by the in-batch prefix check

i.e. descending by ``waited_tokens / uncached``, the response ratio minus one when prefill
throughput is constant; ties go to the lexicographically smaller request id. ``uncached`` is
``len(origin_input_ids) - num_matched_prefix_tokens``. Like ``lpm`` it is not sorted at all when
more than 128 requests wait (:mod:`request_sched.policies.sglang_list`).

Host contract here: call :meth:`on_prefill` with the uncached tokens each engine step computed.
The in-batch prefix check (:func:`~request_sched.policies.lpm.in_batch_deprioritized`) needs
``WaitingRequest.prefix_blocks``; requests without blocks are never deprioritized.
"""

from __future__ import annotations

from request_sched.policies.lpm import in_batch_deprioritized
from request_sched.policies.sglang_list import SGLANG_SORT_LIMIT, SglangListQueue
from request_sched.types import WaitingRequest


class HrrnQueue(SglangListQueue):
    """SGLang's hrrn: waiting prefill tokens over uncached prompt tokens, largest first."""

    def __init__(self, sort_limit: int = SGLANG_SORT_LIMIT) -> None:
        super().__init__(sort_limit)
        #: prefill tokens the engine computed so far (SGLang's ``processed_tokens_counter``)
        self.processed_tokens = 0
        self._arrival_processed: dict[str, int] = {}
        self._popped_stamp: tuple[str, int] | None = None

    def on_prefill(self, tokens: int) -> None:
        """Count ``tokens`` uncached prefill tokens the engine computed in one step."""
        self.processed_tokens += tokens
        if tokens:
            self._invalidate()

    def add(self, request: WaitingRequest, now: float) -> None:
        stamp = self.processed_tokens
        # A request put back right after it was popped never left SGLang's list: keep its stamp.
        if self._popped_stamp is not None and self._popped_stamp[0] == request.request_id:
            stamp = self._popped_stamp[1]
        super().add(request, now)
        self._arrival_processed[request.request_id] = stamp
        self._popped_stamp = None

    def pop(self, now: float) -> WaitingRequest:
        request = super().pop(now)
        self._popped_stamp = (request.request_id, self._arrival_processed.pop(request.request_id))
        return request

    def remove(self, request: WaitingRequest) -> None:
        super().remove(request)
        self._arrival_processed.pop(request.request_id, None)

    def _sort(self, waiting: list[WaitingRequest], now: float) -> None:
        deprioritized = in_batch_deprioritized(waiting)
        processed = self.processed_tokens
        stamps = self._arrival_processed

        def key(r: WaitingRequest) -> tuple[float, str]:
            if r.request_id in deprioritized:
                return (float("inf"), r.request_id)
            uncached = r.uncached_prompt_tokens
            if uncached <= 0:
                return (-float("inf"), r.request_id)
            waited = max(0, processed - stamps[r.request_id])
            return (-waited / uncached, r.request_id)

        waiting.sort(key=key)
