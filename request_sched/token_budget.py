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
rounded down to ``granularity`` tokens. A step with no decode sequences has no TPOT to protect, so
it gets ``max_budget``.

When no budget of at least ``min_budget`` keeps the step within the SLO (the decode batch alone is
too slow, or every step that prefills costs more than the SLO, as on a backend whose mixed steps
carry a large fixed cost), some prefill must still run, and the budget is the one of ``min_budget``
and the step's limit (``max_budget``, or less when the host says so) that costs the decodes less
step time per prefill token::

    (step(P) - step(0)) / P

A fixed cost per prefilling step makes small chunks expensive (the same prompt in more steps pays
it more often), so the limit wins; without one the model's shape decides (ties keep
``min_budget``, which spreads the prefill over more, shorter steps).
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

    def budget(self, decode_seqs: int, kv_context_tokens: int, cached_prefill_tokens: int = 0,
               limit: int | None = None) -> int:
        """Prefill token budget for the next step (tokens, in ``[0, min(max_budget, limit)]``).

        Args:
            decode_seqs: running sequences that decode in the step.
            kv_context_tokens: KV tokens those sequences read (summed).
            cached_prefill_tokens: cached prompt tokens the prefilling requests will read.
            limit: the most prefill the host's own limits allow this step (tokens; default
                ``max_budget``). ``min_budget`` is lowered to it when it is smaller.
        """
        top = self.max_budget if limit is None else max(0, min(self.max_budget, limit))
        if decode_seqs <= 0:
            return top

        def fits(tokens: int) -> bool:
            seconds = self.step_seconds(tokens, decode_seqs, kv_context_tokens, cached_prefill_tokens)
            return seconds <= self.tpot_slo_s

        if fits(top):
            return top
        lo, hi = 0, top  # invariant: hi does not fit; lo fits unless lo == 0
        if fits(0):
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if fits(mid):
                    lo = mid
                else:
                    hi = mid
        best = lo // self.granularity * self.granularity
        floor = min(self.min_budget, top)
        if best >= floor:
            return best

        def delay_per_token(tokens: int) -> float:
            """Step time the decodes lose per prefill token when ``tokens`` (> 0) are prefilled."""
            extra = (self.step_seconds(tokens, decode_seqs, kv_context_tokens, cached_prefill_tokens)
                     - self.step_seconds(0, decode_seqs, kv_context_tokens, cached_prefill_tokens))
            return extra / tokens

        return top if delay_per_token(top) < delay_per_token(floor) else floor
