"""Shortest job first with priority-aware linear aging and an explicit starvation bound (ours).

Score of a waiting request ``r`` at host time ``t`` (smaller is admitted first)::

    score(r, t) = size_s(r) - aging_rate * (t - r.enqueue_s) - priority_weight_s * r.priority

``size_s`` is the job size in seconds of engine time (:class:`~request_sched.job_size.JobSizeEstimator`:
uncached prefill + ``decode_weight`` x predicted remaining output x marginal decode time). ``aging_rate`` is
dimensionless (seconds of job size forgiven per second waited); ``priority_weight_s`` is seconds
of job size forgiven per priority class.

Why a static heap key is exact: ``score(r, t) = key(r) - aging_rate * t`` with
``key(r) = size_s(r) + aging_rate * r.enqueue_s - priority_weight_s * r.priority``. The term
``aging_rate * t`` is the same for every waiting request, so the order of any two waiting requests
never changes while they wait, and a min-heap on ``key`` (computed once, at :meth:`add`) is always
in score order: O(log n) add and pop, no re-scoring.

Why vLLM's sjf cannot use a heap this way: its sorter re-computes ``time.time() - arrival`` inside
``__lt__`` and passes it through a sigmoid (``policies.vllm_sjf``). A sigmoid of waiting time is
not a common shift, so the relative order of two requests does change as time passes, while a heap
only re-compares the elements an insertion or pop happens to touch: the heap invariant, established
with old scores, no longer holds, and ``heap[0]`` need not be the best request (``__lt__`` even
re-scores only its left operand, so ``a < b`` and ``b < a`` can both hold).

Starvation bound: a request that has waited longer than ``max_wait_s`` goes to the front; among
such overdue requests the order is FCFS (earliest ``enqueue_s`` first). A second heap keyed on
``enqueue_s`` finds them in O(log n); each request lives in both heaps and is lazily removed from
the other one when popped. Once a request is overdue, every request that arrived before it is
overdue too, and nothing that arrived after it can pass it, so it is served after at most the
earlier arrivals still waiting at that moment.

Keys are computed when a request is added, with the predictor's knowledge at that moment. A host
that learns something that changes a request's size (a fresh prefix match changes
``cached_tokens``) re-keys it with :meth:`remove` + :meth:`add`.
"""

from __future__ import annotations

from perf_model.batch import StepTimeModel
from perf_model.model_file import resolve_model
from request_sched.job_size import JobSizeEstimator
from request_sched.policies.keyed_heap import KeyedHeap
from request_sched.predictor import OutputLengthPredictor
from request_sched.queue import RequestQueue
from request_sched.types import WaitingRequest


#: step model used when none is given: perf_model's H100 preset for Qwen3-30B-A3B
DEFAULT_STEP_MODEL = "qwen3-30b-a3b-h100"


class SjfAgingQueue(RequestQueue):
    """SJF on job size in seconds, with linear, priority-aware aging and a starvation bound.

    Args:
        step_model: step-latency model that converts tokens to seconds, or a perf_model spec
            string (a preset name such as ``"qwen3-30b-a3b-h100"``, the default, or the path of a
            coefficients JSON file written by ``moesched calibrate``).
        aging_rate: seconds of job size forgiven per second waited (>= 0; 0 = pure SJF inside
            the bound, large = FCFS). Job sizes are tenths of a second of engine time while
            waits under load are seconds, so the default is small: 0.003 (with 0.5, the old
            default, sjf-aging ordered almost like FCFS at 0.9 load; sweep in docs/comparisons.md).
        max_wait_s: starvation bound in seconds (> 0); ``float("inf")`` disables it.
        priority_weight_s: seconds of job size forgiven per priority class (>= 0).
        output_estimate: ``"predictor"``, ``"max_tokens"`` or ``"none"`` (see
            :class:`JobSizeEstimator`); ``"none"`` turns the predictor off.
        decode_weight: factor on the predicted decode seconds of the job size (>= 0; see
            :class:`JobSizeEstimator`). Default 0.2: TTFT is waiting + prefill, so the order
            weighs the prefill fully and a fifth of the predicted decode (which still ranks a
            long answer behind a short one of the same prompt); chosen from the sweep of
            docs/comparisons.md (Azure conv + code, loads 0.85-0.95, P99 TTFT 0.94-1.07x FCFS
            vs 1.00-1.36x with weight 1).
        predictor: output-length predictor to share (a default one if None).
        cap_by_max_tokens: whether the default predictor caps its estimates by each request's
            ``max_new_tokens`` (:class:`OutputLengthPredictor`); False when clients set
            ``max_tokens`` to the true output length (trace replays), where the cap is an oracle.
            Only for the default predictor (a given ``predictor`` keeps its own setting).
        job_size: a ready estimator; overrides ``step_model``/``output_estimate``/``decode_weight``/``predictor``.
    """

    def __init__(
        self,
        step_model: StepTimeModel | str = DEFAULT_STEP_MODEL,
        aging_rate: float = 0.003,
        max_wait_s: float = 10.0,
        priority_weight_s: float = 1.0,
        output_estimate: str = "predictor",
        decode_weight: float = 0.2,
        predictor: OutputLengthPredictor | None = None,
        job_size: JobSizeEstimator | None = None,
        cap_by_max_tokens: bool = True,
    ) -> None:
        if aging_rate < 0 or priority_weight_s < 0:
            raise ValueError(
                f"aging_rate and priority_weight_s must be >= 0, got {aging_rate}, {priority_weight_s}"
            )
        if not max_wait_s > 0:
            raise ValueError(f"max_wait_s must be > 0, got {max_wait_s}")
        if predictor is not None and not cap_by_max_tokens:
            raise ValueError("cap_by_max_tokens applies to the default predictor; "
                             "build the given predictor with OutputLengthPredictor(cap_by_max_tokens=False)")
        if job_size is None:
            if predictor is None:
                predictor = OutputLengthPredictor(cap_by_max_tokens=cap_by_max_tokens)
            model = resolve_model(step_model) if isinstance(step_model, str) else step_model
            job_size = JobSizeEstimator(model, output_estimate=output_estimate, predictor=predictor,
                                        decode_weight=decode_weight)
        self.job_size = job_size
        self.aging_rate = aging_rate
        self.max_wait_s = max_wait_s
        self.priority_weight_s = priority_weight_s
        self._by_key = KeyedHeap()
        self._by_arrival = KeyedHeap()

    def static_key(self, request: WaitingRequest) -> float:
        """``size_s + aging_rate * enqueue_s - priority_weight_s * priority`` (seconds)."""
        return (
            self.job_size.seconds(request)
            + self.aging_rate * request.enqueue_s
            - self.priority_weight_s * request.priority
        )

    def score(self, request: WaitingRequest, now: float) -> float:
        """Time-varying score at ``now`` (smaller first); equals ``static_key - aging_rate*now``."""
        return (
            self.job_size.seconds(request)
            - self.aging_rate * (now - request.enqueue_s)
            - self.priority_weight_s * request.priority
        )

    def add(self, request: WaitingRequest, now: float) -> None:
        key = self.static_key(request)
        self._by_key.push((key,), request)
        self._by_arrival.push((request.enqueue_s, key), request)

    def _overdue_head(self, now: float) -> bool:
        """Whether the earliest waiting request has waited longer than ``max_wait_s``."""
        return self._by_arrival.peek_key()[0] < now - self.max_wait_s

    def pop(self, now: float) -> WaitingRequest:
        if not self._by_key:
            raise IndexError("pop from an empty queue")
        if self._overdue_head(now):
            request = self._by_arrival.pop()
            self._by_key.remove(request.request_id)
        else:
            request = self._by_key.pop()
            self._by_arrival.remove(request.request_id)
        return request

    def peek(self, now: float) -> WaitingRequest:
        if not self._by_key:
            raise IndexError("peek from an empty queue")
        return self._by_arrival.peek() if self._overdue_head(now) else self._by_key.peek()

    def remove(self, request: WaitingRequest) -> None:
        self._by_key.remove(request.request_id)
        self._by_arrival.remove(request.request_id)

    def ordered(self, now: float) -> list[WaitingRequest]:
        by_key = self._by_key.ordered()
        cutoff = now - self.max_wait_s
        overdue = [r for r in by_key if r.enqueue_s < cutoff]
        if not overdue:
            return by_key
        overdue.sort(key=lambda r: r.enqueue_s)  # stable: ties keep key order, as the heap does
        return overdue + [r for r in by_key if r.enqueue_s >= cutoff]

    def __len__(self) -> int:
        return len(self._by_key)

    def on_finished(self, request: WaitingRequest, output_tokens: int) -> None:
        self.job_size.predictor.observe(request, output_tokens)
