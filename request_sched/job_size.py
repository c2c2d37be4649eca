"""Job size of a waiting request in seconds of engine time: prefill plus predicted decode.

Prefill and decode cost very different amounts per token (a prefill token is one row of a large
matrix multiply; a decode token is a whole step shared by the batch), so both are converted to
seconds with a :class:`~perf_model.batch.StepTimeModel` against a reference decode batch of
``reference_decode_seqs`` sequences of ``reference_context_tokens`` each::

    base      = step_seconds(decode_seqs=B, kv_context=B*C)
    prefill_s = step_seconds(prefill=U, cached_prefill=K, decode_seqs=B,
                             kv_context=B*C + U + K) - base
    decode_s  = step_seconds(decode_seqs=B+1, kv_context=(B+1)*C) - base        # per token
    size_s    = prefill_s + decode_weight * predicted_remaining_output * decode_s

where ``U`` is what the request must (re)compute, ``prompt + generated - cached`` tokens (a
preempted request recomputes its prompt and the output it already produced, as SGLang's retraction
and vLLM's recompute preemption do), and ``K`` the cached tokens. ``prefill_s`` is the
extra time the request's prefill adds to a step that also decodes the reference batch;
``decode_s`` is the marginal time of one more sequence in a decode step (what the request costs
every other running request, per output token). ``decode_s`` does not depend on the request and
is computed once; prefill costs are memoised per ``(U, K)`` pair rounded up to
``prefill_granularity`` tokens. ``decode_weight`` (default 1) scales the decode part: it is the
share of a request's decode time the order should count against it (0 = prefill-only).
"""

from __future__ import annotations

from functools import lru_cache

from perf_model.batch import BatchShape, StepTimeModel
from request_sched.predictor import OutputLengthPredictor
from request_sched.types import WaitingRequest

#: accepted values of ``JobSizeEstimator(output_estimate=...)``
OUTPUT_ESTIMATES = ("predictor", "max_tokens", "none")


class JobSizeEstimator:
    """Seconds of engine time a waiting request still needs.

    Args:
        step_model: predicts one step's latency.
        output_estimate: how remaining output tokens are estimated: ``"predictor"`` (the online
            :class:`OutputLengthPredictor`), ``"max_tokens"`` (the request's output cap, the only
            size a host knows for sure) or ``"none"`` (prefill-only job size, as Gimbal and
            SGLang's hrrn use).
        predictor: the predictor to use with ``"predictor"`` (a default one if None).
        decode_weight: factor on the predicted decode seconds (>= 0; 1 = engine time, 0 = the
            same order as ``"none"``).
        reference_decode_seqs: ``B``, sequences in the reference decode batch (>= 1).
        reference_context_tokens: ``C``, KV tokens per reference sequence.
        prefill_granularity: prefill lengths are rounded up to a multiple of this (tokens) before
            the step model is asked, which bounds the memo to a few thousand entries.
    """

    def __init__(
        self,
        step_model: StepTimeModel,
        output_estimate: str = "predictor",
        predictor: OutputLengthPredictor | None = None,
        decode_weight: float = 1.0,
        reference_decode_seqs: int = 32,
        reference_context_tokens: int = 1024,
        prefill_granularity: int = 16,
    ) -> None:
        if reference_decode_seqs < 1 or reference_context_tokens < 0 or prefill_granularity < 1:
            raise ValueError(
                "reference_decode_seqs must be >= 1, reference_context_tokens >= 0, "
                "prefill_granularity >= 1"
            )
        if not decode_weight >= 0:
            raise ValueError(f"decode_weight must be >= 0, got {decode_weight}")
        if output_estimate not in OUTPUT_ESTIMATES:
            raise ValueError(
                f"output_estimate must be one of {', '.join(OUTPUT_ESTIMATES)}, got {output_estimate!r}"
            )
        self.step_model = step_model
        self.output_estimate = output_estimate
        self.predictor = predictor if predictor is not None else OutputLengthPredictor()
        self.decode_weight = decode_weight
        self.granularity = prefill_granularity
        self._decode_seqs = reference_decode_seqs
        self._decode_kv = reference_decode_seqs * reference_context_tokens
        self._base_s = step_model.step_seconds(
            BatchShape(decode_seqs=self._decode_seqs, kv_context_tokens=self._decode_kv)
        )
        marginal = step_model.step_seconds(
            BatchShape(
                decode_seqs=self._decode_seqs + 1,
                kv_context_tokens=self._decode_kv + reference_context_tokens,
            )
        )
        #: seconds one more decoding sequence adds to a step (per output token)
        self.decode_token_s = max(0.0, marginal - self._base_s)
        self._prefill_s = lru_cache(maxsize=65536)(self._prefill_seconds_uncached)

    def _prefill_seconds_uncached(self, uncached: int, cached: int) -> float:
        shape = BatchShape(
            prefill_tokens=uncached,
            cached_prefill_tokens=cached,
            decode_seqs=self._decode_seqs,
            kv_context_tokens=self._decode_kv + uncached + cached,
        )
        return max(0.0, self.step_model.step_seconds(shape) - self._base_s)

    def prefill_seconds(self, request: WaitingRequest) -> float:
        """Extra step time to (re)compute the request's uncached tokens (seconds)."""
        g = self.granularity
        context = request.prompt_tokens + request.generated_tokens
        cached = min(request.cached_tokens, context)
        uncached = context - cached
        return self._prefill_s(-(-uncached // g) * g, -(-cached // g) * g)

    def remaining_output_tokens(self, request: WaitingRequest) -> float:
        """Output tokens still to come under the configured ``output_estimate``."""
        if self.output_estimate == "predictor":
            return self.predictor.predict_remaining(request)
        if self.output_estimate == "max_tokens":
            return float(max(0, request.max_new_tokens - request.generated_tokens))
        return 0.0

    def seconds(self, request: WaitingRequest) -> float:
        """Job size of ``request`` in seconds: prefill time + decode_weight x remaining output x
        decode time."""
        decode_s = self.remaining_output_tokens(request) * self.decode_token_s
        return self.prefill_seconds(request) + self.decode_weight * decode_s
