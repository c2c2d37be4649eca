"""vLLM's ``sjf`` scheduling policy, as defined on vLLM's main branch.

Source: vllm-project/vllm, ``vllm/v1/core/sched/policy/shortest_job_first.py`` and
``vllm/v1/core/sched/request_queue.py`` (``SJFRequestQueue``), read at commit 2f912b02; not in the
0.33.0 release. A request's score (larger is admitted first) is a weighted sum of two sigmoids::

    score = clamp01( w_t * sigmoid((wait_s - t_med) / t_med)
                   + w_l * sigmoid(-(prompt_len - l_med) / l_med) )

with ``wait_s = time.time() - arrival_time``, ``prompt_len = len(prompt_token_ids)`` (the whole
prompt, cached or not), defaults ``t_med = 5`` s, ``l_med = 32768`` tokens, ``w_t = w_l = 0.5``.

The queue is a binary heap of sorter objects whose ``__lt__`` re-computes the *left* operand's
score with the current wall time and compares it with the right operand's score cached at its own
last comparison. Because the score is not a common shift of time, the order of two requests can
change while they wait; the heap is never re-heapified, so ``heap[0]`` is only the best request
among those the last sift operations touched. :class:`VllmSjfQueue` reproduces this behaviour,
heap and stale comparisons included (with the host clock ``now`` in place of ``time.time()``),
because that is what a vLLM user gets. The time bonus is bounded by ``w_t``: once every request
has waited much longer than ``t_med`` the order is by prompt length alone again.
"""

from __future__ import annotations

import heapq
import math

from request_sched.queue import RequestQueue
from request_sched.types import WaitingRequest


def vllm_sjf_score(
    wait_s: float,
    prompt_tokens: int,
    time_median_s: float = 5.0,
    length_median_tokens: float = 32768.0,
    time_weight: float = 0.5,
    length_weight: float = 0.5,
) -> float:
    """vLLM's SJF score in [0, 1]; larger is admitted first."""
    time_part = 1.0 / (1.0 + math.exp(-(wait_s - time_median_s) / time_median_s))
    length_part = 1.0 / (1.0 + math.exp((prompt_tokens - length_median_tokens) / length_median_tokens))
    return max(0.0, min(1.0, time_weight * time_part + length_weight * length_part))


class _Sorter:
    """Heap element: re-scores itself (only itself) whenever it is the left operand of ``<``."""

    __slots__ = ("request", "queue", "score")

    def __init__(self, request: WaitingRequest, queue: VllmSjfQueue) -> None:
        self.request = request
        self.queue = queue
        self.score = 0.0
        self.rescore()

    def rescore(self) -> None:
        q = self.queue
        self.score = vllm_sjf_score(
            q.now - self.request.enqueue_s, self.request.prompt_tokens,
            q.time_median_s, q.length_median_tokens, q.time_weight, q.length_weight,
        )

    def __lt__(self, other: _Sorter) -> bool:
        self.rescore()
        return self.score > other.score


class VllmSjfQueue(RequestQueue):
    """vLLM's SJF queue (sigmoid score of waiting time and prompt length, stale-score heap).

    Args mirror vLLM's ``TimeAndLengthScorer`` defaults.
    """

    def __init__(
        self,
        time_median_s: float = 5.0,
        length_median_tokens: float = 32768.0,
        time_weight: float = 0.5,
        length_weight: float = 0.5,
    ) -> None:
        if time_median_s <= 0 or length_median_tokens <= 0:
            raise ValueError("time_median_s and length_median_tokens must be > 0")
        self.time_median_s = time_median_s
        self.length_median_tokens = length_median_tokens
        self.time_weight = time_weight
        self.length_weight = length_weight
        #: host clock of the current operation (plays vLLM's ``time.time()``)
        self.now = 0.0
        self._heap: list[_Sorter] = []
        self._ids: set[str] = set()

    def add(self, request: WaitingRequest, now: float) -> None:
        self.now = now
        if request.request_id in self._ids:
            raise ValueError(f"request {request.request_id!r} is already waiting")
        self._ids.add(request.request_id)
        heapq.heappush(self._heap, _Sorter(request, self))

    def pop(self, now: float) -> WaitingRequest:
        self.now = now
        if not self._heap:
            raise IndexError("pop from an empty queue")
        request = heapq.heappop(self._heap).request
        self._ids.discard(request.request_id)
        return request

    def peek(self, now: float) -> WaitingRequest:
        if not self._heap:
            raise IndexError("peek from an empty queue")
        return self._heap[0].request

    def remove(self, request: WaitingRequest) -> None:
        self._ids.remove(request.request_id)
        self._heap = [s for s in self._heap if s.request.request_id != request.request_id]
        heapq.heapify(self._heap)

    def ordered(self, now: float) -> list[WaitingRequest]:
        """vLLM's ``__iter__``: pop a copy of the heap until it is empty."""
        self.now = now
        copy = list(self._heap)
        return [heapq.heappop(copy).request for _ in range(len(copy))]

    def __len__(self) -> int:
        return len(self._heap)
