"""First come, first served: vLLM's and SGLang's default waiting-queue order."""

from __future__ import annotations

from request_sched.policies.keyed_heap import KeyedHeap
from request_sched.queue import RequestQueue
from request_sched.types import WaitingRequest


class FcfsQueue(RequestQueue):
    """Admit in order of ``enqueue_s`` (earliest first; ties in insertion order).

    A preempted request keeps its original ``enqueue_s`` and so returns ahead of later arrivals,
    which matches vLLM (preempted requests are prepended to the waiting deque) and SGLang (retracted
    requests go back to the front).

    Args:
        use_priority: order by priority class first (larger ``priority`` earlier), then arrival,
            as SGLang's fcfs does under ``--enable-priority-scheduling`` (with
            ``--schedule-low-priority-values-first`` off) and vLLM's ``priority`` policy does.
    """

    def __init__(self, use_priority: bool = False) -> None:
        self.use_priority = use_priority
        self._heap = KeyedHeap()

    def _key(self, request: WaitingRequest) -> tuple[float, ...]:
        if self.use_priority:
            return (-request.priority, request.enqueue_s)
        return (request.enqueue_s,)

    def add(self, request: WaitingRequest, now: float) -> None:
        self._heap.push(self._key(request), request)

    def pop(self, now: float) -> WaitingRequest:
        return self._heap.pop()

    def peek(self, now: float) -> WaitingRequest:
        return self._heap.peek()

    def remove(self, request: WaitingRequest) -> None:
        self._heap.remove(request.request_id)

    def ordered(self, now: float) -> list[WaitingRequest]:
        return self._heap.ordered()

    def __len__(self) -> int:
        return len(self._heap)
