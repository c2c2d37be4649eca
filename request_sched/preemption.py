"""Which running requests a waiting request may preempt when every running slot is taken.

A queue order cannot help the request at the head of the waiting queue when the engine's running
slots (``--max-running-requests``) are all held: it waits until one frees, i.e. until some running
request finishes its decode. This rule lets the head request take a slot from a running request
whose remaining work is much larger, shortest-remaining-time style, and lets a request past the
starvation bound take a slot at once. It is pure: a host (the SGLang plugin's
``PrefillAdder.preempt_to_schedule`` hook) asks it for victims and carries out the preemption.

Work is counted in engine steps a request still holds its slot for, so no step-latency model is
needed (the ratio of two step counts has no unit)::

    left(r)            = max(0, predicted_total_output(r) - r.generated_tokens)
    candidate_steps(c) = 1 + left(c)                      # one prefill step, then one token per step
    remaining_steps(v) = left(v)

``left`` is deliberately not the predictor's ``predict_remaining``, which assumes a request that
ran past its estimate will run as long again (right for ordering, wrong here): preempting a
request near its end throws away its progress, so a request past its estimate counts as finishing.

A running request ``v`` is a victim for the candidate ``c`` iff ``v`` has been preempted fewer than
``max_preemptions`` times, ``v`` is not overdue itself (less than ``overdue_s`` since its arrival:
a request past the starvation bound is never pushed out again), and either

* ``remaining_steps(v) >= size_ratio * candidate_steps(c)`` (much shorter job waiting), or
* ``c`` has waited longer than ``overdue_s`` (starvation bound reached) and ``overdue_preempts``
  is on (such a ``v`` arrived after ``c``: overdue requests keep FCFS among themselves).

Victims come most remaining steps first. Because each request can be preempted at most
``max_preemptions`` times, a preempted request cannot be pushed out forever, and the extra
prefill work preemption causes (the victim recomputes its prompt and output) is bounded by
``max_preemptions`` prompts per request.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from request_sched.predictor import OutputLengthPredictor
from request_sched.types import WaitingRequest


@dataclass(frozen=True)
class RunningJob:
    """A running request as the rule sees it.

    Attributes:
        request: its description; ``generated_tokens`` = output tokens produced so far.
        waited_s: seconds since it first arrived (``now - request.enqueue_s``).
        preemptions: how many times it has been preempted already.
    """

    request: WaitingRequest
    waited_s: float = 0.0
    preemptions: int = 0


class PreemptionRule:
    """Chooses the running requests a waiting request may preempt (see module docstring).

    Args:
        predictor: output-length predictor (the policy's own, so both see the same estimates).
        size_ratio: a running request is preempted for a candidate with ``size_ratio`` times fewer
            steps of work (> 1; ``inf``: never for size).
        overdue_s: waiting seconds after which a candidate may preempt regardless of size (the
            policy's starvation bound ``max_wait_s``; ``inf``: never).
        max_preemptions: times one request may be preempted (>= 0; 0 disables preemption).
        overdue_preempts: whether an overdue candidate may preempt at all.
    """

    def __init__(self, predictor: OutputLengthPredictor, size_ratio: float = 2.0,
                 overdue_s: float = math.inf, max_preemptions: int = 1,
                 overdue_preempts: bool = True) -> None:
        if not size_ratio > 1:
            raise ValueError(f"size_ratio must be > 1, got {size_ratio}")
        if not overdue_s > 0:
            raise ValueError(f"overdue_s must be > 0, got {overdue_s}")
        if max_preemptions < 0:
            raise ValueError(f"max_preemptions must be >= 0, got {max_preemptions}")
        self.predictor = predictor
        self.size_ratio = size_ratio
        self.overdue_s = overdue_s
        self.max_preemptions = max_preemptions
        self.overdue_preempts = overdue_preempts

    def remaining_steps(self, request: WaitingRequest) -> float:
        """Steps the running ``request`` still holds its slot for: its predicted total output minus
        what it generated, >= 0."""
        return max(0.0, self.predictor.predict_total(request) - request.generated_tokens)

    def candidate_steps(self, request: WaitingRequest) -> float:
        """Steps the waiting ``request`` would hold a slot for: 1 prefill + its remaining steps."""
        return 1.0 + self.remaining_steps(request)

    def is_overdue(self, waited_s: float) -> bool:
        """Whether a candidate that has waited ``waited_s`` seconds may preempt regardless of size."""
        return self.overdue_preempts and waited_s > self.overdue_s

    def victims(self, candidate: WaitingRequest, waited_s: float,
                running: Sequence[RunningJob]) -> list[int]:
        """Indices into ``running`` the candidate may preempt, most remaining steps first.

        The host takes victims from the front until the candidate fits (one frees a running slot).
        """
        eligible = [i for i, job in enumerate(running)
                    if job.preemptions < self.max_preemptions and not job.waited_s > self.overdue_s]
        if not eligible:
            return []
        remaining = {i: self.remaining_steps(running[i].request) for i in eligible}
        if not self.is_overdue(waited_s):
            threshold = self.size_ratio * self.candidate_steps(candidate)
            eligible = [i for i in eligible if remaining[i] >= threshold]
        return sorted(eligible, key=lambda i: -remaining[i])
