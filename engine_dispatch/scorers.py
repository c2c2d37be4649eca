"""Scorers: each maps the candidate engines to scores in [0, 1], higher = better for this request.

Cost-type scorers use the *ratio-to-best* normalisation ``score_e = (c + min_j x_j) / (c + x_e)``:
the cheapest engine scores 1, an engine with twice the (offset) cost 0.5; the offset ``c`` (a
scorer parameter, in the cost's unit) keeps idle engines from dividing by zero and sets how much a
small absolute difference matters. Scores are lists aligned with ``Decision.candidates``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from engine_dispatch.load_tracker import EngineEstimate
from engine_dispatch.sessions import SessionTable
from engine_dispatch.types import DispatchRequest
from perf_model.batch import BatchShape, StepTimeModel


@dataclass
class Decision:
    """What every scorer sees for one request.

    Attributes:
        request: the request being placed.
        now: host clock, seconds.
        candidates: load estimates of the engines still in the running (after filters).
        cached_tokens: prompt tokens each candidate is believed to hold, aligned with candidates.
    """

    request: DispatchRequest
    now: float
    candidates: list[EngineEstimate]
    cached_tokens: list[int]

    def uncached_tokens(self, index: int) -> int:
        """Prompt tokens candidate ``index`` would still have to prefill for this request."""
        return max(0, self.request.prompt_tokens - self.cached_tokens[index])


class Scorer(Protocol):
    def scores(self, decision: Decision) -> list[float]:
        """One score in [0, 1] per candidate."""
        ...


def ratio_to_best(costs: Sequence[float], offset: float) -> list[float]:
    """``(offset + min(costs)) / (offset + cost)`` for each cost >= 0; offset > 0."""
    best = offset + min(costs)
    return [best / (offset + cost) for cost in costs]


class PrefixLoadScorer:
    """Prefill tokens the engine must compute before this request's first token.

    cost_e = pending_prefill_tokens_e + (prompt_tokens - cached_tokens_e); ratio-to-best with
    offset ``scale_tokens``. Rewards cache hits and penalises long prefill queues in one unit.
    """

    def __init__(self, scale_tokens: float) -> None:
        self.scale_tokens = scale_tokens

    def scores(self, decision: Decision) -> list[float]:
        costs = [engine.pending_prefill_tokens + decision.uncached_tokens(i)
                 for i, engine in enumerate(decision.candidates)]
        return ratio_to_best(costs, self.scale_tokens)


class KvUseScorer:
    """KV-cache headroom after admitting this request.

    u_e = (kv_used_e + uncached_e) / kv_capacity_e; score = max(0, 1 - u_e / saturation), so an
    engine at or past ``saturation`` scores 0 (the dispatcher may also filter it out).
    """

    def __init__(self, saturation: float) -> None:
        self.saturation = saturation

    def scores(self, decision: Decision) -> list[float]:
        return [max(0.0, 1.0 - (engine.kv_used_tokens + decision.uncached_tokens(i))
                    / engine.kv_capacity_tokens / self.saturation)
                for i, engine in enumerate(decision.candidates)]


class StickinessScorer:
    """1 for the engine the request's session last used (within its TTL) unless it is overloaded.

    Overloaded: outstanding_e > overload_rel * mean outstanding + overload_abs, or KV fraction
    >= max_kv_fraction. Everyone else (and every engine when there is no live session) scores 0.
    """

    def __init__(self, sessions: SessionTable, overload_rel: float, overload_abs: float,
                 max_kv_fraction: float) -> None:
        self.sessions = sessions
        self.overload_rel = overload_rel
        self.overload_abs = overload_abs
        self.max_kv_fraction = max_kv_fraction

    def scores(self, decision: Decision) -> list[float]:
        candidates = decision.candidates
        result = [0.0] * len(candidates)
        owner = self.sessions.owner(decision.request.session_id, decision.now)
        if owner is None:
            return result
        for i, engine in enumerate(candidates):
            if engine.engine_id == owner:
                mean = sum(e.outstanding for e in candidates) / len(candidates)
                overloaded = (engine.outstanding > self.overload_rel * mean + self.overload_abs
                              or engine.kv_used_fraction >= self.max_kv_fraction)
                result[i] = 0.0 if overloaded else 1.0
                break
        return result


class LeastLoadScorer:
    """Fewest outstanding (running + waiting) requests; ratio-to-best, offset ``scale_requests``."""

    def __init__(self, scale_requests: float) -> None:
        self.scale_requests = scale_requests

    def scores(self, decision: Decision) -> list[float]:
        return ratio_to_best([engine.outstanding for engine in decision.candidates],
                             self.scale_requests)


class PredictedLoadScorer:
    """Predicted time until this request's prefill completes on the engine (time-to-drain).

    The engine's queued prefill plus this request's uncached tokens, T = pending_e + uncached_e
    (at least 1), runs in chunks of ``chunk_tokens`` next to its running decode batch:
    t_e = floor(T / C) * step(C) + step(T mod C), with step(n) = step_model.step_seconds(
    BatchShape(prefill_tokens=n, decode_seqs=running_e, kv_context_tokens=kv_used_e)).
    Ratio-to-best with offset ``scale_s``. Step times are memoised on (n rounded up to 64 tokens,
    running, kv_used rounded up to 1024 tokens) so a decision costs dictionary lookups.
    """

    _MEMO_LIMIT = 1 << 16

    def __init__(self, step_model: StepTimeModel, chunk_tokens: int, scale_s: float) -> None:
        self.step_model = step_model
        self.chunk_tokens = chunk_tokens
        self.scale_s = scale_s
        self._memo: dict[tuple[int, int, int], float] = {}

    def drain_seconds(self, engine: EngineEstimate, extra_tokens: int) -> float:
        """Predicted seconds to prefill the engine's queue plus ``extra_tokens``."""
        total = max(1, engine.pending_prefill_tokens + extra_tokens)
        full, rest = divmod(total, self.chunk_tokens)
        seconds = full * self._step(self.chunk_tokens, engine) if full else 0.0
        return seconds + (self._step(rest, engine) if rest else 0.0)

    def scores(self, decision: Decision) -> list[float]:
        return ratio_to_best([self.drain_seconds(engine, decision.uncached_tokens(i))
                              for i, engine in enumerate(decision.candidates)], self.scale_s)

    def _step(self, prefill_tokens: int, engine: EngineEstimate) -> float:
        key = (-(-prefill_tokens // 64) * 64, engine.running, -(-engine.kv_used_tokens // 1024))
        seconds = self._memo.get(key)
        if seconds is None:
            if len(self._memo) >= self._MEMO_LIMIT:
                self._memo.clear()
            seconds = self.step_model.step_seconds(BatchShape(
                prefill_tokens=key[0], decode_seqs=key[1], kv_context_tokens=key[2] * 1024))
            self._memo[key] = seconds
        return seconds
