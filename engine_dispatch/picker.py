"""Pickers: turn combined scores into one engine."""

from __future__ import annotations

import random
from collections.abc import Sequence

#: scores closer than this count as a tie
TIE_EPSILON = 1e-9


class ArgmaxPicker:
    """Highest score; among ties, the first engine after the previously picked one (cyclic by id),
    so equal engines are used in turn and the choice is deterministic. ``engine_ids`` must be
    in increasing order."""

    def __init__(self) -> None:
        self._last = -1

    def pick(self, engine_ids: Sequence[int], scores: Sequence[float]) -> int:
        floor = max(scores) - TIE_EPSILON
        tied = [engine for engine, score in zip(engine_ids, scores) if score >= floor]
        last = self._last
        choice = next((engine for engine in tied if engine > last), tied[0])
        self._last = choice
        return choice


class TopKPicker:
    """Uniformly random among the ``k`` highest scores (seeded, reproducible)."""

    def __init__(self, k: int, seed: int) -> None:
        self._k = k
        self._rng = random.Random(seed)

    def pick(self, engine_ids: Sequence[int], scores: Sequence[float]) -> int:
        ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], engine_ids[i]))
        return engine_ids[self._rng.choice(ranked[: self._k])]
