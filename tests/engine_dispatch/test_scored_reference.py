"""The scored dispatcher against a straightforward reference: each scorer's formula as
docs/engine_dispatch.md states it (one list of scores per scorer, combined afterwards) and the
argmax tie rule, on random streams of engine reports (stale, unhealthy, tied), shared prefixes,
sessions and in-flight books, every scorer (cache affinity included) at random weights. The dispatcher fuses scoring with the weighted sum and skips the
per-engine arithmetic when nothing matched; it must pick the same engine every time."""

from hypothesis import given, settings
from hypothesis import strategies as st

from engine_dispatch.config import config_from_dict
from engine_dispatch.factory import create_dispatcher
from engine_dispatch.scorers import PredictedLoadScorer
from engine_dispatch.types import DispatchRequest, EngineLoad
from perf_model.batch import BatchShape

BLOCK_TOKENS = 16


class LinearSteps:
    """Step time = 1 ms + 0.1 ms per prefill token + 1 ms per decoding sequence."""

    def step_seconds(self, batch: BatchShape, moe=None) -> float:
        return 1e-3 + 1e-4 * batch.prefill_tokens + 1e-3 * batch.decode_seqs


def ratio_to_best(costs, offset):
    best = offset + min(costs)
    return [best / (offset + cost) for cost in costs]


def overloaded(c, i, params):
    """The documented overload rule of stickiness and cache_affinity for candidate ``i``."""
    mean = sum(c.outstanding) / len(c)
    return (c.outstanding[i] > params.overload_rel * mean + params.overload_abs
            or c.kv_used_tokens[i] >= params.max_kv_fraction * c.kv_capacity_tokens[i])


def reference_pick(dispatcher, request, loads, now, last_pick):
    """The engine the documented rule picks (``last_pick``: the previous argmax pick or -1)."""
    config = dispatcher.config
    c = dispatcher.tracker.estimate_all([load for load in loads if load.healthy], now)
    matched = dispatcher.index.matched_blocks(request.block_hashes)
    uncached = [max(0, request.prompt_tokens - matched[e] * BLOCK_TOKENS) for e in c.engine_id]
    drain = PredictedLoadScorer(LinearSteps(), config.predicted_load.chunk_tokens,
                                config.predicted_load.scale_s).drain_seconds
    sticky = [0.0] * len(c)
    owner = dispatcher.sessions.owner(request.session_id, now)
    if owner in c.engine_id:
        i = c.engine_id.index(owner)
        sticky[i] = 0.0 if overloaded(c, i, config.stickiness) else 1.0
    affine = [0.0] * len(c)
    home = min(range(len(c)), key=uncached.__getitem__)  # most of the prompt cached (first on ties)
    cached = request.prompt_tokens - uncached[home]
    if cached >= config.cache_affinity.min_cached_fraction * request.prompt_tokens > 0:
        affine[home] = 0.0 if overloaded(c, home, config.cache_affinity) else 1.0
    scores = {
        "cache_affinity": affine,
        "prefix_load": ratio_to_best([p + u for p, u in zip(c.pending_prefill_tokens, uncached)],
                                     config.prefix_load.scale_tokens),
        "least_load": ratio_to_best(c.outstanding, config.least_load.scale_requests),
        "kv_use": [max(0.0, 1.0 - (used + u) / (cap * config.kv_use.saturation))
                   for used, u, cap in zip(c.kv_used_tokens, uncached, c.kv_capacity_tokens)],
        "stickiness": sticky,
        "predicted_load": ratio_to_best(
            [drain(r, kv, p + u) for r, kv, p, u in
             zip(c.running, c.kv_used_tokens, c.pending_prefill_tokens, uncached)],
            config.predicted_load.scale_s),
    }
    total = [0.0] * len(c)
    for name, weight in dispatcher.weights_for(c).items():
        if weight > 0:
            total = [acc + weight * score for acc, score in zip(total, scores[name])]
    best = max(total)
    tied = [e for e, score in zip(c.engine_id, total) if score >= best - 1e-9]
    return next((e for e in tied if e > last_pick), tied[0])


weights = st.fixed_dictionaries({name: st.sampled_from([0.0, 0.1, 0.3, 1.0]) for name in (
    "prefix_load", "least_load", "kv_use", "stickiness", "cache_affinity", "predicted_load")}).filter(
    lambda table: any(table.values()))
chains = st.lists(st.integers(0, 3), max_size=5).map(
    lambda steps: tuple(hash(tuple(steps[: i + 1])) for i in range(len(steps))))


@settings(max_examples=150, deadline=None)
@given(weights, st.integers(1, 6), st.data())
def test_scored_pick_equals_reference(table, num_engines, data):
    config = config_from_dict({"weights": table, "stickiness": {"overload_abs": 1},
                               "cache_affinity": {"overload_abs": 1}})
    dispatcher = create_dispatcher("scored", num_engines, config=config, step_model=LinearSteps(),
                                   block_tokens=BLOCK_TOKENS)
    loads = [EngineLoad(e, kv_capacity_tokens=4096) for e in range(num_engines)]
    now, last_pick, sent = 0.0, -1, []
    for step in range(data.draw(st.integers(1, 25))):
        now += data.draw(st.sampled_from([0.0, 0.5, 3.0]))
        for load in loads:
            if data.draw(st.booleans()):
                load.running, load.waiting = data.draw(st.integers(0, 4)), data.draw(st.integers(0, 4))
                load.pending_prefill_tokens = data.draw(st.sampled_from([0, 64, 1000]))
                load.kv_used_tokens = data.draw(st.integers(0, 4096))
                load.kv_capacity_tokens = data.draw(st.sampled_from([0, 1024, 4096]))
                load.reported_s = now - data.draw(st.sampled_from([0.0, 1.0, 10.0]))
                load.healthy = data.draw(st.integers(0, 5)) > 0
        loads[data.draw(st.integers(0, num_engines - 1))].healthy = True
        blocks = data.draw(chains)
        request = DispatchRequest(f"r{step}", len(blocks) * BLOCK_TOKENS + data.draw(
            st.integers(0, 20)), block_hashes=blocks,
            session_id=data.draw(st.sampled_from([None, "a", "b"])))
        expected = reference_pick(dispatcher, request, loads, now, last_pick)
        last_pick = dispatcher.pick(request, loads, now)
        assert last_pick == expected
        dispatcher.on_dispatched(request, last_pick, now)
        sent.append((request, last_pick))
        if data.draw(st.booleans()):
            done, engine = sent.pop(0)
            dispatcher.on_finished(done, engine, now, 1)
