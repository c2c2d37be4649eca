"""Learnt admission headroom: how many future output tokens to keep free per admitted request.

SGLang 0.5.23 admits a waiting request only if its prompt plus ``min(max_new_tokens, C)`` output
tokens fit in the free KV cache, and keeps ``new_token_ratio x min(remaining max_new_tokens, C)``
free for every running request, with ``C`` = ``CLIP_MAX_NEW_TOKENS`` (``srt/managers/
schedule_policy.py``, 4,096 unless ``SGLANG_CLIP_MAX_NEW_TOKENS_ESTIMATION`` is set). Clients
rarely set ``max_tokens`` near what they get back (the Azure conv trace's outputs have a median of
a few hundred tokens, while chat clients commonly send thousands), so the headroom is sized for
outputs that never come, and requests wait for KV that stays unused.

:class:`LearntHeadroom` replaces the constant ``C`` with a high quantile of the output lengths this
engine actually produced recently: ``C = clamp(quantile_q(last window outputs), floor, ceiling)``,
and ``ceiling`` (the stock 4,096) until ``warmup`` requests have finished. A request that outgrows
its share is not cut short (``max_new_tokens`` still bounds generation); when the KV cache then
runs out, the engine retracts as it always does (SGLang's ``retract_decode`` raises its
``new_token_ratio`` after one), so the quantile trades a little retraction risk for admitting
sooner. Cost: O(1) per observation, a sort of ``window`` integers every ``refresh_every``
observations.
"""

from __future__ import annotations

import math
from collections import deque


class LearntHeadroom:
    """A quantile of recent output lengths, used as the clip on predicted future output tokens.

    Args:
        quantile: ``q`` in (0, 1]; 0.95 keeps room for all but the longest 5% of recent outputs.
        window: recent finished requests the quantile is taken over (>= 1).
        warmup: finished requests before the learnt value replaces ``ceiling_tokens`` (>= 1).
        floor_tokens: smallest clip (tokens, >= 1), so a run of tiny outputs cannot starve
            the next long one of all headroom.
        ceiling_tokens: largest clip (tokens, >= floor); SGLang's default 4,096.
        refresh_every: observations between two recomputations of the quantile (>= 1).
    """

    def __init__(self, quantile: float = 0.95, window: int = 1024, warmup: int = 64,
                 floor_tokens: int = 64, ceiling_tokens: int = 4096, refresh_every: int = 32) -> None:
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"quantile: expected a number in (0, 1], got {quantile}")
        if window < 1 or warmup < 1 or refresh_every < 1:
            raise ValueError("window, warmup and refresh_every: expected integers >= 1, got "
                             f"{window}, {warmup}, {refresh_every}")
        if not 1 <= floor_tokens <= ceiling_tokens:
            raise ValueError("floor_tokens, ceiling_tokens: expected 1 <= floor <= ceiling, got "
                             f"{floor_tokens}, {ceiling_tokens}")
        self.quantile = quantile
        self.warmup = warmup
        self.floor_tokens = floor_tokens
        self.ceiling_tokens = ceiling_tokens
        self.refresh_every = refresh_every
        self._recent: deque[int] = deque(maxlen=window)
        self._seen = 0
        self.tokens = ceiling_tokens
        """The current clip in tokens (``ceiling_tokens`` until ``warmup`` observations)."""

    def observe(self, output_tokens: int) -> bool:
        """Record a finished request's output length; returns whether :attr:`tokens` was recomputed."""
        self._recent.append(max(0, int(output_tokens)))
        self._seen += 1
        due = self._seen == self.warmup or (self._seen > self.warmup and self._seen % self.refresh_every == 0)
        if not due:
            return False
        ordered = sorted(self._recent)
        index = min(len(ordered) - 1, max(0, math.ceil(len(ordered) * self.quantile) - 1))
        self.tokens = max(self.floor_tokens, min(self.ceiling_tokens, ordered[index]))
        return True
