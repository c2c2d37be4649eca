"""SLO-aware prefill token budget (the LENS idea): admit as much prefill as the TPOT SLO allows.

In a continuous-batching step, running requests decode one token each while new requests
prefill. Every prefill token makes the step longer, and the step time is what each running request
experiences as its time per output token (TPOT). Each step, :meth:`SloTokenBudget.budget` picks the
largest number of uncached prefill tokens ``P`` such that the step-latency model predicts::

    step_seconds(BatchShape(prefill_tokens=P, cached_prefill_tokens=K, decode_seqs=D,
                            kv_context_tokens=KV + P + K)) <= tpot_slo_s

for the current decode batch (``D`` sequences holding ``KV`` context tokens) and ``K`` cached
prompt tokens the prefilling requests will read. ``P`` is found by bisection over integers in
``[0, max_budget]`` (the step time grows with ``P``; about log2(max_budget) model calls), then
rounded down to ``granularity`` tokens. Floor: if even the smallest budget breaks the SLO (the
decode batch alone is too slow, or the SLO is tighter than one step) the result is
``min_budget``, so waiting requests keep getting prefilled instead of starving; and a step with no
decode sequences has no TPOT to protect, so it gets ``max_budget``.
"""

from __future__ import annotations

from perf_model.batch import BatchShape, StepTimeModel


class SloTokenBudget:
    """Per-step prefill token budget that keeps the predicted step time within a TPOT SLO.

    Args:
        step_model: predicts one step's latency.
        tpot_slo_s: TPOT target in seconds (> 0).
        max_budget: largest budget ever returned (tokens; e.g. SGLang's ``--max-prefill-tokens``
            16384 or the chunked-prefill size).
        min_budget: smallest budget returned while requests wait (tokens, 0 <= min <= max).
        granularity: budgets are multiples of this (tokens, >= 1; e.g. the KV page size).
    """

    def __init__(
        self,
        step_model: StepTimeModel,
        tpot_slo_s: float,
        max_budget: int = 16384,
        min_budget: int = 256,
        granularity: int = 16,
    ) -> None:
        if not tpot_slo_s > 0:
            raise ValueError(f"tpot_slo_s must be > 0, got {tpot_slo_s}")
        if not 0 <= min_budget <= max_budget or granularity < 1:
            raise ValueError(
                f"need 0 <= min_budget <= max_budget and granularity >= 1, got "
                f"min_budget={min_budget}, max_budget={max_budget}, granularity={granularity}"
            )
        self.step_model = step_model
        self.tpot_slo_s = tpot_slo_s
        self.max_budget = max_budget
        self.min_budget = min_budget
        self.granularity = granularity

    def step_seconds(self, prefill_tokens: int, decode_seqs: int, kv_context_tokens: int,
                     cached_prefill_tokens: int = 0) -> float:
        """Predicted step time with ``prefill_tokens`` of prefill added to the decode batch."""
        return self.step_model.step_seconds(
            BatchShape(
                prefill_tokens=prefill_tokens,
                cached_prefill_tokens=cached_prefill_tokens,
                decode_seqs=decode_seqs,
                kv_context_tokens=kv_context_tokens + prefill_tokens + cached_prefill_tokens,
            )
        )

    def budget(self, decode_seqs: int, kv_context_tokens: int, cached_prefill_tokens: int = 0) -> int:
        """Prefill token budget for the next step (tokens, in ``[min_budget, max_budget]``).

        Args:
            decode_seqs: running sequences that decode in the step.
            kv_context_tokens: KV tokens those sequences read (summed).
            cached_prefill_tokens: cached prompt tokens the prefilling requests will read.
        """
        if decode_seqs <= 0:
            return self.max_budget

        def fits(tokens: int) -> bool:
            seconds = self.step_seconds(tokens, decode_seqs, kv_context_tokens, cached_prefill_tokens)
            return seconds <= self.tpot_slo_s

        if fits(self.max_budget):
            return self.max_budget
        lo, hi = 0, self.max_budget  # invariant: hi does not fit; lo fits unless lo == 0
        if not fits(0):
            return self.min_budget
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid
        best = lo // self.granularity * self.granularity
        return max(self.min_budget, best)
