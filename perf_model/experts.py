"""How many distinct experts a batch touches: the structure behind MoE step latency.

A token routed top-``k`` over ``E`` experts (uniformly, independently) misses a given expert with
probability ``(1 - k/E)``; a batch of ``B`` tokens therefore touches on average

    D(B) = E * (1 - (1 - k/E) ** B)

distinct experts per MoE layer. In the memory-bound regime every touched expert's weights are read
once per layer, so the MoE part of a step grows like D(B): steeply for small batches, saturating
at E. Fitted to vLLM's Qwen3-30B-A3B inter-token latencies on one H100 (ml-energy leaderboard),
``ITL = a + c_e * D(B) + c_s * B`` reaches R^2 0.999 where a line in B reaches 0.95.
"""

from __future__ import annotations

import math

import numpy as np


def distinct_experts(tokens: float, num_experts: int, top_k: int) -> float:
    """Expected distinct experts per layer touched by ``tokens`` tokens (0 when ``num_experts`` is 0).

    Args:
        tokens: tokens passing through the MoE layer (>= 0; fractional values interpolate).
        num_experts: routed experts per layer, E.
        top_k: experts chosen per token, k (<= E).
    """
    if num_experts <= 0 or tokens <= 0:
        return 0.0
    miss = 1.0 - top_k / num_experts
    return num_experts * (1.0 - math.pow(miss, tokens))


def distinct_experts_array(tokens: np.ndarray, num_experts: int, top_k: int) -> np.ndarray:
    """Vectorised :func:`distinct_experts`: ``tokens`` [n] -> expected distinct experts [n]."""
    tokens = np.asarray(tokens, dtype=float)
    if num_experts <= 0:
        return np.zeros_like(tokens)
    miss = 1.0 - top_k / num_experts
    return np.where(tokens > 0, num_experts * (1.0 - np.power(miss, np.maximum(tokens, 0.0))), 0.0)
