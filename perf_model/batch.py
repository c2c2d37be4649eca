"""What a step-latency model is asked: the shape of one engine step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class BatchShape:
    """Composition of one continuous-batching step of one engine.

    Attributes:
        prefill_tokens: prompt tokens computed this step (uncached; a chunk of a chunked prefill).
        cached_prefill_tokens: prompt tokens of the prefilling requests served from the prefix
            cache (read by attention, not recomputed).
        decode_seqs: sequences that each produce one output token this step.
        kv_context_tokens: KV-cache tokens read by attention this step, summed over all sequences
            in the batch (prefill context included).
        prefill_attention_pairs: query-key pairs computed by causal prefill attention, summed over
            the prefilling sequences: a chunk of ``n`` new tokens after ``c`` tokens of context adds
            ``n * (c + (n + 1) / 2)``. 0 means unknown; models then assume one prefilling sequence
            (``prefill_tokens * (cached_prefill_tokens + (prefill_tokens + 1) / 2)``).
    """

    prefill_tokens: int = 0
    cached_prefill_tokens: int = 0
    decode_seqs: int = 0
    kv_context_tokens: int = 0
    prefill_attention_pairs: float = 0.0

    @property
    def tokens(self) -> int:
        """Tokens that pass through the network this step (new prefill tokens + one per decode)."""
        return self.prefill_tokens + self.decode_seqs

    @property
    def attention_pairs(self) -> float:
        """``prefill_attention_pairs``, or the one-sequence estimate when it is 0."""
        if self.prefill_attention_pairs > 0 or self.prefill_tokens == 0:
            return self.prefill_attention_pairs
        return self.prefill_tokens * (self.cached_prefill_tokens + (self.prefill_tokens + 1) / 2)


@dataclass(frozen=True)
class MoeFactors:
    """How an expert placement stretches the MoE part of a step (expert parallelism).

    Attributes:
        imbalance: mean over MoE layers of (max GPU load / mean GPU load), >= 1.0; the MoE compute
            of a layer waits for its most loaded GPU.
        remote_fraction: share of token->expert dispatches that cross GPUs (0..1), which sets the
            all-to-all volume.
    """

    imbalance: float = 1.0
    remote_fraction: float = 0.0


class StepTimeModel(Protocol):
    """Anything that predicts the wall time of one engine step."""

    def step_seconds(self, batch: BatchShape, moe: MoeFactors | None = None) -> float:
        """Predicted latency of one step in seconds (> 0)."""
        ...
