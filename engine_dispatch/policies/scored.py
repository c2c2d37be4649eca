"""moesched's dispatcher: filter -> scorers -> weighted sum -> picker (llm-d style, weights in config).

Per request:
1. filter: healthy engines; then, if ``dispatch.filter_kv_saturated``, those whose KV fraction is
   below ``kv_use.saturation`` (skipped when it would leave none);
2. estimate each candidate's load (:class:`~engine_dispatch.load_tracker.LoadTracker`: latest
   report plus own dispatches since, or own books alone when the report is stale) and its cached
   prefix (:class:`~engine_dispatch.prefix_index.PrefixIndex`);
3. score with each weighted scorer (:mod:`engine_dispatch.scorers`), combine as
   ``sum_s w_s * score_s`` (the argmax is the same as for the normalised sum); the weight set is ``[weights]``, or with
   ``[hybrid]`` the ``below`` / ``above`` set depending on cluster utilisation (GAPS);
4. pick (:mod:`engine_dispatch.picker`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from engine_dispatch.config import OverloadParams, ScoredConfig
from engine_dispatch.dispatcher import Dispatcher
from engine_dispatch.healthy import healthy_engines
from engine_dispatch.load_tracker import Estimates, LoadTracker
from engine_dispatch.picker import ArgmaxPicker, TopKPicker
from engine_dispatch.prefix_index import PrefixIndex
from engine_dispatch.scorers import (CacheAffinityScorer, Decision, KvUseScorer, LeastLoadScorer,
                                     OverloadGuard, PredictedLoadScorer, PrefixLoadScorer, Scorer,
                                     StickinessScorer)
from engine_dispatch.sessions import SessionTable
from engine_dispatch.types import DispatchRequest, EngineLoad
from perf_model.batch import StepTimeModel


def _guard(params: OverloadParams) -> OverloadGuard:
    return OverloadGuard(params.overload_rel, params.overload_abs, params.max_kv_fraction)


class ScoredDispatcher(Dispatcher):
    """Weighted-scorer dispatcher configured by a :class:`~engine_dispatch.config.ScoredConfig`.

    Args:
        num_engines: engines ``0..num_engines-1``.
        config: validated settings.
        step_model: step-latency model for the ``predicted_load`` scorer (required iff it has a
            positive weight).
    """

    def __init__(self, num_engines: int, config: ScoredConfig,
                 step_model: StepTimeModel | None = None) -> None:
        in_use = config.scorers_in_use()
        if "predicted_load" in in_use and step_model is None:
            raise ValueError("weights.predicted_load > 0 needs a step-time model (step_model=...)")
        self.config = config
        self.tracker = LoadTracker(num_engines, config.dispatch.stale_after_s)
        self.index = PrefixIndex(num_engines, config.dispatch.index_capacity_blocks)
        self.sessions = SessionTable(config.stickiness.ttl_s, config.stickiness.max_sessions)
        self._scorers: dict[str, Scorer] = {}
        for name in sorted(in_use):
            self._scorers[name] = self._make_scorer(name, step_model)
        if config.dispatch.picker == "argmax":
            self._picker: ArgmaxPicker | TopKPicker = ArgmaxPicker()
        else:
            self._picker = TopKPicker(config.dispatch.top_k, config.dispatch.seed)
        self._last_matched: tuple[str, list[int]] | None = None  # (request_id, blocks per engine)
        #: whether any scorer reads the cached prefix (else the index is neither read nor fed)
        self._uses_prefix = bool(in_use & {"prefix_load", "kv_use", "predicted_load", "cache_affinity"})

    def _make_scorer(self, name: str, step_model: StepTimeModel | None) -> Scorer:
        c = self.config
        if name == "prefix_load":
            return PrefixLoadScorer(c.prefix_load.scale_tokens)
        if name == "kv_use":
            return KvUseScorer(c.kv_use.saturation)
        if name == "stickiness":
            s = c.stickiness
            return StickinessScorer(self.sessions, _guard(s))
        if name == "cache_affinity":
            return CacheAffinityScorer(c.cache_affinity.min_cached_fraction, _guard(c.cache_affinity))
        if name == "least_load":
            return LeastLoadScorer(c.least_load.scale_requests)
        assert name == "predicted_load" and step_model is not None
        return PredictedLoadScorer(step_model, c.predicted_load.chunk_tokens,
                                   c.predicted_load.scale_s)

    # --- decision ---------------------------------------------------------------------------

    def pick(self, request: DispatchRequest, engines: Sequence[EngineLoad], now: float) -> int:
        candidates = self.tracker.estimate_all(healthy_engines(engines), now)
        if self.config.dispatch.filter_kv_saturated:
            candidates = self._roomy(candidates)
        decision = Decision(request, now, candidates, self._uncached_tokens(request, candidates))
        total = [0.0] * len(candidates)
        for name, weight in self.weights_for(candidates).items():
            if weight > 0:
                total = self._scorers[name].add_scores(decision, weight, total)
        choice = self._picker.pick(candidates.engine_id, total)
        if self._uses_prefix:
            capacity = candidates.kv_capacity_tokens[candidates.engine_id.index(choice)]
            self._bound_index(choice, capacity)
        return choice

    def _roomy(self, candidates: Estimates) -> Estimates:
        """Candidates whose KV fraction is below ``kv_use.saturation``, unless that is none."""
        limit = self.config.kv_use.saturation
        roomy = [i for i, (used, cap) in enumerate(zip(candidates.kv_used_tokens,
                                                       candidates.kv_capacity_tokens))
                 if used < limit * cap]
        return candidates.subset(roomy) if 0 < len(roomy) < len(candidates) else candidates

    def _uncached_tokens(self, request: DispatchRequest, candidates: Estimates) -> list[int]:
        """Prompt tokens each candidate lacks in its believed prefix cache (>= 0, one per
        candidate); remembers the match for :meth:`on_dispatched`."""
        prompt = request.prompt_tokens
        if not self._uses_prefix:
            return [prompt] * len(candidates)
        matched = self.index.matched_blocks(request.block_hashes)
        self._last_matched = (request.request_id, matched)
        if not any(matched):  # no engine holds the first block: skip the per-engine arithmetic
            return [max(0, prompt)] * len(candidates)
        block_tokens = self.config.dispatch.block_tokens
        return [left if (left := prompt - matched[engine] * block_tokens) > 0 else 0
                for engine in candidates.engine_id]

    def _bound_index(self, engine_id: int, kv_capacity_tokens: int) -> None:
        """The engine cannot cache more blocks than its KV pool holds."""
        if kv_capacity_tokens > 1:
            dispatch = self.config.dispatch
            self.index.set_capacity(engine_id, min(dispatch.index_capacity_blocks,
                                                   kv_capacity_tokens // dispatch.block_tokens))

    def weights_for(self, candidates: Estimates) -> dict[str, float]:
        """The weight set in force: ``[weights]``, or the GAPS ``[hybrid]`` below/above set."""
        hybrid = self.config.hybrid
        if hybrid is None:
            return self.config.weights
        if hybrid.metric == "kv":
            utilisation = sum(candidates.kv_used_fraction()) / len(candidates)
        else:
            cap = hybrid.max_running_requests
            utilisation = sum(min(1.0, n / cap) for n in candidates.outstanding) / len(candidates)
        return hybrid.below if utilisation < hybrid.threshold else hybrid.above

    # --- bookkeeping ------------------------------------------------------------------------

    def on_dispatched(self, request: DispatchRequest, engine_id: int, now: float) -> None:
        cached = 0
        if self._uses_prefix:
            if self._last_matched is not None and self._last_matched[0] == request.request_id:
                matched = self._last_matched[1]
            else:
                matched = self.index.matched_blocks(request.block_hashes)
            cached = min(request.prompt_tokens,
                         matched[engine_id] * self.config.dispatch.block_tokens)
            self.index.insert(engine_id, request.block_hashes)
        self.tracker.dispatched(request.request_id, engine_id, now, request.prompt_tokens,
                                request.prompt_tokens - cached)
        self.sessions.record(request.session_id, engine_id, now)

    def on_first_token(self, request: DispatchRequest, engine_id: int, now: float) -> None:
        self.tracker.first_token(request.request_id)

    def on_finished(self, request: DispatchRequest, engine_id: int, now: float,
                    output_tokens: int) -> None:
        self.tracker.finished(request.request_id)

    def on_engine_reset(self, engine_id: int) -> None:
        self.index.clear(engine_id)

    def observe_cached_blocks(self, engine_id: int, stored: Sequence[int],
                              removed: Iterable[int] = ()) -> None:
        """Engine-reported cache events: ``stored`` block hashes (prompt order), ``removed`` ones."""
        self.index.remove(engine_id, removed)
        self.index.insert(engine_id, stored)
