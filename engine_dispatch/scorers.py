"""Scorers: each maps the candidate engines to scores in [0, 1], higher = better for this request.

Cost-type scorers use the *ratio-to-best* normalisation ``score_e = (c + min_j x_j) / (c + x_e)``:
the cheapest engine scores 1, an engine with twice the (offset) cost 0.5; the offset ``c`` (a
scorer parameter, in the cost's unit) keeps idle engines from dividing by zero and sets how much a
small absolute difference matters.

A scorer adds its weighted scores to the dispatcher's running total in the same pass that computes
them (``total_e + weight * score_e``, lists aligned with ``Decision.candidates``): at 64 engines a
separate pass per scorer to combine the lists cost about as much as the scoring itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from engine_dispatch.load_tracker import Estimates
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
        uncached_tokens: prompt tokens each candidate would still have to prefill for this
            request (prompt minus its believed cached prefix), aligned with candidates.
    """

    request: DispatchRequest
    now: float
    candidates: Estimates
    uncached_tokens: list[int]


class Scorer(Protocol):
    def add_scores(self, decision: Decision, weight: float, total: list[float]) -> list[float]:
        """``total_e + weight * score_e`` for each candidate ``e``, with ``score_e`` in [0, 1];
        may update ``total`` in place and return it."""
        ...


def add_ratio_to_best(total: list[float], weight: float, costs: Sequence[float],
                      offset: float) -> list[float]:
    """``total_e + weight * (offset + min(costs)) / (offset + cost_e)``; costs >= 0, offset > 0."""
    best = offset + min(costs)
    return [acc + weight * (best / (offset + cost)) for acc, cost in zip(total, costs)]


class PrefixLoadScorer:
    """Prefill tokens the engine must compute before this request's first token.

    cost_e = pending_prefill_tokens_e + (prompt_tokens - cached_tokens_e); ratio-to-best with
    offset ``scale_tokens``. Rewards cache hits and penalises long prefill queues in one unit.
    """

    def __init__(self, scale_tokens: float) -> None:
        self.scale_tokens = scale_tokens

    def add_scores(self, decision: Decision, weight: float, total: list[float]) -> list[float]:
        costs = [pending + uncached for pending, uncached in
                 zip(decision.candidates.pending_prefill_tokens, decision.uncached_tokens)]
        return add_ratio_to_best(total, weight, costs, self.scale_tokens)


class KvUseScorer:
    """KV-cache headroom after admitting this request.

    u_e = (kv_used_e + uncached_e) / kv_capacity_e; score = max(0, 1 - u_e / saturation), so an
    engine at or past ``saturation`` scores 0 (the dispatcher may also filter it out).
    """

    def __init__(self, saturation: float) -> None:
        self.saturation = saturation

    def add_scores(self, decision: Decision, weight: float, total: list[float]) -> list[float]:
        c = decision.candidates
        sat = self.saturation
        return [acc + weight * (score if (score := 1.0 - (used + uncached) / (cap * sat)) > 0.0
                                else 0.0)
                for acc, used, uncached, cap in
                zip(total, c.kv_used_tokens, decision.uncached_tokens, c.kv_capacity_tokens)]


@dataclass(frozen=True)
class OverloadGuard:
    """Engine ``i`` of ``c`` is overloaded when outstanding_i > ``rel`` x mean outstanding +
    ``abs_requests``, or its KV fraction >= ``max_kv_fraction``."""

    rel: float
    abs_requests: float
    max_kv_fraction: float

    def overloaded(self, c: Estimates, i: int) -> bool:
        mean = sum(c.outstanding) / len(c)
        return (c.outstanding[i] > self.rel * mean + self.abs_requests
                or c.kv_used_tokens[i] >= self.max_kv_fraction * c.kv_capacity_tokens[i])


class StickinessScorer:
    """1 for the engine the request's session last used (within its TTL) unless it is overloaded
    (``guard``). Everyone else (and every engine when there is no live session) scores 0, so at
    most one entry of the total changes."""

    def __init__(self, sessions: SessionTable, guard: OverloadGuard) -> None:
        self.sessions = sessions
        self.guard = guard

    def add_scores(self, decision: Decision, weight: float, total: list[float]) -> list[float]:
        c = decision.candidates
        owner = self.sessions.owner(decision.request.session_id, decision.now)
        try:
            i = c.engine_id.index(owner)  # None (no live session) is never an engine id
        except ValueError:
            return total
        if not self.guard.overloaded(c, i):
            total[i] += weight * 1.0
        return total


class CacheAffinityScorer:
    """1 for the engine believed to hold most of this request's prompt, when that is at least
    ``min_cached_fraction`` of it and the engine is not overloaded (``guard``); 0 elsewhere.

    ``prefix_load`` prices only this request's first token: one prompt pending on the engine that
    holds a document outweighs the document's cached blocks, the request goes elsewhere and the
    document gains a second home, so its later requests hit half as often. This term keeps a
    shared prefix on one engine until that engine is overloaded (sglang-router's ``cache_aware``
    policy likewise sends a request to its best-matching worker unless the load is imbalanced past
    its thresholds).
    """

    def __init__(self, min_cached_fraction: float, guard: OverloadGuard) -> None:
        self.min_cached_fraction = min_cached_fraction
        self.guard = guard

    def add_scores(self, decision: Decision, weight: float, total: list[float]) -> list[float]:
        uncached = decision.uncached_tokens
        i = min(range(len(uncached)), key=uncached.__getitem__)
        prompt = decision.request.prompt_tokens
        if prompt - uncached[i] >= self.min_cached_fraction * prompt > 0 \
                and not self.guard.overloaded(decision.candidates, i):
            total[i] += weight * 1.0
        return total


class LeastLoadScorer:
    """Fewest outstanding (running + waiting) requests; ratio-to-best, offset ``scale_requests``."""

    def __init__(self, scale_requests: float) -> None:
        self.scale_requests = scale_requests

    def add_scores(self, decision: Decision, weight: float, total: list[float]) -> list[float]:
        return add_ratio_to_best(total, weight, decision.candidates.outstanding,
                                 self.scale_requests)


def _bucket(value: int) -> int:
    """Round up to 4 significant bits (exact below 16; relative error < 1/8): memo keys."""
    if value < 16:
        return value
    shift = value.bit_length() - 4
    return -(-value >> shift) << shift


class PredictedLoadScorer:
    """Predicted time until this request's prefill completes on the engine (time-to-drain).

    The engine's queued prefill plus this request's uncached tokens, T = pending_e + uncached_e
    (at least 1), runs in chunks of C = ``chunk_tokens`` beside its running decode batch:
    t_e = floor(T / C) * step(C) + step(T mod C), where step(n) = step_model.step_seconds(
    BatchShape(prefill_tokens=n, decode_seqs=running_e, kv_context_tokens=kv_used_e)).
    Ratio-to-best with offset ``scale_s``.

    Speed: step(n) for the partial chunk is interpolated linearly between step(1) and step(C),
    and both are memoised on (running, kv_used) rounded up to 4 significant bits, so a decision
    costs one dictionary lookup per engine once the memo is warm.
    """

    _MEMO_LIMIT = 1 << 16

    def __init__(self, step_model: StepTimeModel, chunk_tokens: int, scale_s: float) -> None:
        self.step_model = step_model
        self.chunk_tokens = chunk_tokens
        self.scale_s = scale_s
        self._memo: dict[tuple[int, int], tuple[float, float]] = {}

    def drain_seconds(self, running: int, kv_used: int, tokens: int) -> float:
        """Predicted seconds to prefill ``tokens`` on an engine decoding ``running`` sequences."""
        key = (_bucket(running), _bucket(kv_used))
        steps = self._memo.get(key)
        if steps is None:
            steps = self._steps(key)
        one, full = steps
        chunk = self.chunk_tokens
        total = max(1, tokens)
        chunks, rest = divmod(total, chunk)
        seconds = chunks * full
        if rest:
            seconds += one + (full - one) * (rest - 1) / max(1, chunk - 1)
        return seconds

    def add_scores(self, decision: Decision, weight: float, total: list[float]) -> list[float]:
        c = decision.candidates
        drain = self.drain_seconds
        seconds = [drain(running, kv, pending + uncached) for running, kv, pending, uncached in
                   zip(c.running, c.kv_used_tokens, c.pending_prefill_tokens,
                       decision.uncached_tokens)]
        return add_ratio_to_best(total, weight, seconds, self.scale_s)

    def _steps(self, key: tuple[int, int]) -> tuple[float, float]:
        if len(self._memo) >= self._MEMO_LIMIT:
            self._memo.clear()
        running, kv = key
        steps = tuple(self.step_model.step_seconds(BatchShape(
            prefill_tokens=n, decode_seqs=running, kv_context_tokens=kv))
            for n in (1, self.chunk_tokens))
        self._memo[key] = steps  # type: ignore[assignment]
        return steps  # type: ignore[return-value]
