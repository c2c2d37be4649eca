"""Base for policies that mimic SGLang 0.5.23's waiting list (``Scheduler.waiting_queue``).

SGLang keeps waiting requests in a Python list: new and retracted requests are appended, and every
scheduling step ``SchedulePolicy.calc_priority`` sorts the list in place; the prefill adder then
walks it from the front. Cache-aware policies (``lpm``, ``hrrn``) skip the sort when more than
``WAITING_QUEUE_PREFIX_MATCH_MAX = 128`` requests wait ("turn off the expensive prefix matching and
sorting when the #queue is large"), which leaves the list in its previous order with new arrivals
at the end (``srt/managers/schedule_policy.py``, ``_determine_active_policy``).

This base keeps such a list; a subclass supplies :meth:`_sort`. The list is sorted once per
scheduling pass, as one ``calc_priority`` call does: ``ordered``/``peek``/``pop`` sort (unless the
fallback applies) when the host's clock ``now`` moved since the last sort or the list changed by
:meth:`add`/:meth:`remove` or by the subclass (:meth:`_invalidate`, e.g. hrrn's token counter).
Popping does not re-sort: SGLang's prefill adder walks the list of one pass in that pass's order,
so taking the head does not reorder the rest (for ``lpm``/``hrrn`` it matters: a request that
shared a prefix with the one just taken keeps its in-batch deprioritization for the pass). In
SGLang a request the prefill adder could not admit never leaves the list; here the host pops it
and adds it back, so a request re-added right after it was popped returns to the front, where it
was, without a re-sort.
"""

from __future__ import annotations

from abc import abstractmethod

from request_sched.queue import RequestQueue
from request_sched.types import WaitingRequest

#: SGLang 0.5.23 ``WAITING_QUEUE_PREFIX_MATCH_MAX``: above this many waiting, lpm/hrrn do not sort.
SGLANG_SORT_LIMIT = 128


class SglangListQueue(RequestQueue):
    """A list in SGLang's current order, re-sorted on demand unless more than ``sort_limit`` wait.

    Args:
        sort_limit: largest queue length that is still sorted (SGLang: 128).
    """

    def __init__(self, sort_limit: int = SGLANG_SORT_LIMIT) -> None:
        self.sort_limit = sort_limit
        self._waiting: list[WaitingRequest] = []
        self._ids: set[str] = set()
        self._last_popped: str | None = None
        self._sorted_at: float | None = None  # the ``now`` of the last sort; None: sort again

    @abstractmethod
    def _sort(self, waiting: list[WaitingRequest], now: float) -> None:
        """Sort ``waiting`` in place into the policy's order."""

    def _invalidate(self) -> None:
        """The order may have changed: the next ``ordered``/``peek``/``pop`` sorts again."""
        self._sorted_at = None

    def _refresh(self, now: float) -> None:
        if self._sorted_at == now:
            return  # this pass is sorted already
        self._sorted_at = now
        if len(self._waiting) <= self.sort_limit:
            self._sort(self._waiting, now)

    def add(self, request: WaitingRequest, now: float) -> None:
        if request.request_id in self._ids:
            raise ValueError(f"request {request.request_id!r} is already waiting")
        self._ids.add(request.request_id)
        if request.request_id == self._last_popped:
            self._waiting.insert(0, request)  # back where it was: the pass's order stands
        else:
            self._waiting.append(request)
            self._invalidate()
        self._last_popped = None

    def pop(self, now: float) -> WaitingRequest:
        if not self._waiting:
            raise IndexError("pop from an empty queue")
        self._refresh(now)
        request = self._waiting.pop(0)
        self._ids.discard(request.request_id)
        self._last_popped = request.request_id
        return request

    def peek(self, now: float) -> WaitingRequest:
        if not self._waiting:
            raise IndexError("peek from an empty queue")
        self._refresh(now)
        return self._waiting[0]

    def remove(self, request: WaitingRequest) -> None:
        self._ids.remove(request.request_id)
        self._waiting = [r for r in self._waiting if r.request_id != request.request_id]
        self._invalidate()

    def ordered(self, now: float) -> list[WaitingRequest]:
        self._refresh(now)
        return list(self._waiting)

    def __len__(self) -> int:
        return len(self._waiting)
