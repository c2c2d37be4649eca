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
    """

    prefill_tokens: int = 0
    cached_prefill_tokens: int = 0
    decode_seqs: int = 0
    kv_context_tokens: int = 0


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
