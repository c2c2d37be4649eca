"""Dispatch policies on hand-made cases: cache_aware's rule, stickiness and its expiry, stale
reports, the GAPS hybrid switch, predicted load, baselines."""

import dataclasses

import pytest

from engine_dispatch.config import ScoredConfig, config_from_dict
from engine_dispatch.factory import create_dispatcher
from engine_dispatch.load_tracker import LoadTracker
from engine_dispatch.types import DispatchRequest, EngineLoad
from perf_model.batch import BatchShape


def engines(n, **fields):
    return [EngineLoad(i, kv_capacity_tokens=100_000, **fields) for i in range(n)]


def send(dispatcher, request, loads, now=0.0):
    engine = dispatcher.pick(request, loads, now)
    dispatcher.on_dispatched(request, engine, now)
    return engine


# --- sglang-router cache_aware --------------------------------------------------------------

def test_cache_aware_follows_text_match_above_threshold():
    d = create_dispatcher("cache-aware", 3)
    loads = engines(3)
    first = send(d, DispatchRequest("a", 10, text="system prompt: be brief. Q1"), loads)
    other = send(d, DispatchRequest("b", 10, text="zzz unrelated"), loads)
    assert other != first  # cache miss goes to the smallest tree, not the used one
    # 24 of 27 characters match -> rate 0.89 > 0.3: same engine
    assert send(d, DispatchRequest("c", 10, text="system prompt: be brief. Q2"), loads) == first


def test_cache_aware_miss_goes_to_smallest_tree_even_when_loaded():
    d = create_dispatcher("cache-aware", 2)
    loads = engines(2)
    send(d, DispatchRequest("a", 10, text="x" * 100), loads)  # engine 0 tree: 100 chars
    for i in range(10):  # 10 in-flight matches on engine 0 (imbalance 10 < 64: still balanced)
        assert send(d, DispatchRequest(f"m{i}", 10, text="x" * 100), loads) == 0
    # rate 1/5 = 0.2 <= 0.3: smallest tree (engine 1, 0 chars)
    assert send(d, DispatchRequest("b", 10, text="xyzzy"), loads) == 1


def test_cache_aware_imbalance_needs_both_thresholds():
    d = create_dispatcher("cache-aware", 2, balance_abs_threshold=3, balance_rel_threshold=1.5)
    loads = engines(2)
    for i in range(4):
        assert send(d, DispatchRequest(f"a{i}", 10, text="same text"), loads) == 0
    # loads 4 vs 0: 4-0 > 3 and 4 > 1.5*0 -> imbalanced -> least loaded despite the match
    assert send(d, DispatchRequest("b", 10, text="same text"), loads) == 1
    d2 = create_dispatcher("cache-aware", 2, balance_abs_threshold=3, balance_rel_threshold=10)
    for i in range(4):
        send(d2, DispatchRequest(f"a{i}", 10, text="same text"), loads)
    send(d2, DispatchRequest("x", 10, text="other"), loads)  # engine 1: load 1
    # 4-1 = 3 is not > 3: balanced, the match wins
    assert send(d2, DispatchRequest("b", 10, text="same text"), loads) == 0


def test_cache_aware_unhealthy_choice_falls_back_to_first_healthy():
    d = create_dispatcher("cache-aware", 3)
    loads = engines(3)
    target = send(d, DispatchRequest("a", 10, text="hello world"), loads)
    loads[target].healthy = False
    expected = next(e.engine_id for e in loads if e.healthy)
    assert send(d, DispatchRequest("b", 10, text="hello world"), loads) == expected


def test_cache_aware_uses_block_surrogate_without_text():
    d = create_dispatcher("cache-aware", 2)
    loads = engines(2)
    first = send(d, DispatchRequest("a", 1024, block_hashes=(1, 2, 3, 4)), loads)
    send(d, DispatchRequest("b", 1024, block_hashes=(9,)), loads)
    assert send(d, DispatchRequest("c", 1024, block_hashes=(1, 2, 7, 8)), loads) == first


# --- scored: stickiness ---------------------------------------------------------------------

def sticky_only(ttl_s=10.0):
    config = config_from_dict({"weights": {"stickiness": 1.0, "least_load": 0.1},
                               "stickiness": {"ttl_s": ttl_s, "overload_abs": 2}})
    return create_dispatcher("scored", 4, config=config)


def test_session_sticks_until_ttl_expires():
    d = sticky_only(ttl_s=10.0)
    loads = engines(4)
    home = send(d, DispatchRequest("s1", 100, session_id="alice"), loads, now=0.0)
    for i in range(3):  # other traffic makes home the most loaded; alice still goes home
        send(d, DispatchRequest(f"o{i}", 100), loads, now=1.0)
    assert send(d, DispatchRequest("s2", 100, session_id="alice"), loads, now=5.0) == home
    # 14.9 s after the last use: within TTL measured from the *last* request
    assert send(d, DispatchRequest("s3", 100, session_id="alice"), loads, now=14.9) == home
    d.on_finished(DispatchRequest("s1", 100), home, 15.0, 1)
    # 30 s later the session has expired: least-load decides (home carries 2 in flight)
    assert send(d, DispatchRequest("s4", 100, session_id="alice"), loads, now=30.0) != home


def test_session_yields_when_its_engine_is_overloaded():
    d = sticky_only()
    loads = engines(4)
    home = send(d, DispatchRequest("s1", 100, session_id="bob"), loads)
    loads[home].waiting = 50  # far above 1.5 x mean + 2
    assert send(d, DispatchRequest("s2", 100, session_id="bob"), loads) != home


def test_session_moves_when_its_engine_fails():
    d = sticky_only()
    loads = engines(4)
    home = send(d, DispatchRequest("s1", 100, session_id="eve"), loads)
    loads[home].healthy = False
    new_home = send(d, DispatchRequest("s2", 100, session_id="eve"), loads)
    loads[home].healthy = True
    assert new_home != home
    assert send(d, DispatchRequest("s3", 100, session_id="eve"), loads) == new_home


# --- scored: cache affinity ---------------------------------------------------------------------

def affine(weight=0.5, **params):
    return create_dispatcher("scored", 2, config=config_from_dict({
        "weights": {"prefix_load": 1.0, "least_load": 0.3, "cache_affinity": weight},
        "dispatch": {"block_tokens": 100}, "cache_affinity": params}))


def document_home_with_a_prompt_pending(d):
    """A 320-token request whose first 300 tokens the home engine holds, while the home has a
    400-token prompt queued and the other engine nothing; returns (request, home, loads)."""
    blocks = tuple(range(1, 4))
    loads = engines(2)
    home = send(d, DispatchRequest("doc", 320, block_hashes=blocks), loads)
    send(d, DispatchRequest("other", 320, block_hashes=(99, 98, 97)), loads)
    loads[home].pending_prefill_tokens = 400
    return DispatchRequest("again", 320, block_hashes=blocks), home, loads


def test_cache_affinity_keeps_a_shared_prefix_home_while_a_prompt_is_pending_there():
    request, home, loads = document_home_with_a_prompt_pending(d := affine(weight=0.0))
    assert d.pick(request, loads, 1.0) != home  # first-token cost alone: a second home
    request, home, loads = document_home_with_a_prompt_pending(d := affine())
    assert d.pick(request, loads, 1.0) == home


def test_cache_affinity_yields_when_home_is_overloaded_or_holds_too_little():
    blocks = tuple(range(1, 4))
    d = affine(overload_abs=2)
    loads = engines(2)
    home = send(d, DispatchRequest("doc", 320, block_hashes=blocks), loads)
    loads[home].waiting = 20  # far above 1.5 x mean + 2
    loads[home].pending_prefill_tokens = 400
    assert d.pick(DispatchRequest("a", 320, block_hashes=blocks), loads, 1.0) != home
    strict = affine(min_cached_fraction=1.0)  # 300 of 320 tokens cached is not enough
    loads = engines(2)
    home = send(strict, DispatchRequest("doc", 320, block_hashes=blocks), loads)
    loads[home].pending_prefill_tokens = 400
    assert strict.pick(DispatchRequest("b", 320, block_hashes=blocks), loads, 1.0) != home


def test_cache_affinity_parameters_are_checked():
    with pytest.raises(ValueError, match="cache_affinity.min_cached_fraction: expected a number in"):
        config_from_dict({"cache_affinity": {"min_cached_fraction": 0}})
    assert ScoredConfig().weights.get("cache_affinity", 0.0) == 0.0  # off unless a file sets it


# --- scored: prefix load, staleness, hybrid, predicted load -----------------------------------

def test_prefix_load_prefers_cached_engine_until_its_queue_costs_more():
    d = create_dispatcher("scored", 2, config=config_from_dict(
        {"weights": {"prefix_load": 1.0}, "dispatch": {"block_tokens": 100}}))
    loads = engines(2)
    blocks = tuple(range(1, 11))  # 1,000 tokens
    home = send(d, DispatchRequest("a", 1000, block_hashes=blocks), loads)
    d.on_first_token(DispatchRequest("a", 1000), home, 0.0)
    assert send(d, DispatchRequest("b", 1000, block_hashes=blocks), loads) == home
    loads[home].pending_prefill_tokens = 5000  # a long queue outweighs a 1,000-token hit
    assert send(d, DispatchRequest("c", 1000, block_hashes=blocks), loads) != home


def test_stale_reports_fall_back_to_own_books():
    tracker = LoadTracker(2, stale_after_s=1.0)
    load = EngineLoad(0, running=7, waiting=3, kv_capacity_tokens=1000, reported_s=10.0)
    tracker.dispatched("y", 0, now=9.0, prompt_tokens=50, uncached_tokens=50)
    tracker.dispatched("x", 0, now=10.5, prompt_tokens=200, uncached_tokens=150)
    fresh = tracker.estimate_all([load], now=10.6)  # report (10) + x dispatched after it
    assert (fresh.outstanding, fresh.pending_prefill_tokens, fresh.kv_used_tokens) == (
        [11], [150], [200])
    tracker.first_token("x")
    assert tracker.estimate_all([load], now=10.7).pending_prefill_tokens == [0]
    stale = tracker.estimate_all([load], now=12.0)  # report ignored: own books (x and y)
    assert (stale.outstanding, stale.pending_prefill_tokens, stale.kv_used_tokens) == (
        [2], [50], [250])
    tracker.finished("x")
    tracker.finished("y")
    assert tracker.estimate_all([load], now=12.0).outstanding == [0]
    assert tracker.estimate_all([load], now=10.8).outstanding == [10]


def test_hybrid_switches_weight_sets_on_utilisation():
    config = config_from_dict({"hybrid": {"metric": "kv", "threshold": 0.5,
                                          "below": {"least_load": 1.0},
                                          "above": {"prefix_load": 1.0}}})
    d = create_dispatcher("scored", 2, config=config)
    loads = engines(2)
    loads[0].kv_used_tokens = 30_000  # mean utilisation 0.15 -> below: least_load
    assert d.weights_for(d.tracker.estimate_all(loads, 0.0)) == {"least_load": 1.0}
    for load in loads:
        load.kv_used_tokens = 70_000
    assert d.weights_for(d.tracker.estimate_all(loads, 0.0)) == {"prefix_load": 1.0}


class LinearSteps:
    """Step time = 1 ms + 0.1 ms per prefill token + 1 ms per decoding sequence."""

    def step_seconds(self, batch: BatchShape, moe=None) -> float:
        return 1e-3 + 1e-4 * batch.prefill_tokens + 1e-3 * batch.decode_seqs


def test_predicted_load_counts_decode_batch_that_prefix_load_ignores():
    config = config_from_dict({"weights": {"predicted_load": 1.0}})
    d = create_dispatcher("scored", 2, config=config, step_model=LinearSteps())
    loads = engines(2)
    loads[0].running, loads[0].pending_prefill_tokens = 200, 0     # big decode batch
    loads[1].running, loads[1].pending_prefill_tokens = 0, 1000    # some queued prefill
    # engine 0: ~0.2 s per step with 200 decodes; engine 1: 1,100 tokens ~ 0.11 s
    assert d.pick(DispatchRequest("a", 100), loads, 0.0) == 1


def test_saturated_engines_are_filtered():
    config = config_from_dict({"dispatch": {"filter_kv_saturated": True}})
    d = create_dispatcher("scored", 3, config=config)
    loads = engines(3)
    loads[1].kv_used_tokens = 95_000
    picks = {send(d, DispatchRequest(f"r{i}", 10), loads) for i in range(6)}
    assert 1 not in picks


@pytest.mark.parametrize("name", ["round-robin", "least-requests", "power-of-two",
                                  "cache-aware", "scored"])
def test_every_policy_avoids_unhealthy_and_raises_without_engines(name):
    d = create_dispatcher(name, 3)
    loads = engines(3)
    loads[1].healthy = False
    assert all(send(d, DispatchRequest(f"r{i}", 10, text="t"), loads) != 1 for i in range(10))
    for load in loads:
        load.healthy = False
    with pytest.raises(RuntimeError):
        d.pick(DispatchRequest("z", 10), loads, 0.0)


def test_least_requests_and_top_k():
    d = create_dispatcher("least-requests", 3)
    loads = engines(3)
    loads[0].waiting, loads[2].waiting = 5, 2
    assert d.pick(DispatchRequest("a", 10), loads, 0.0) == 1
    config = dataclasses.replace(ScoredConfig(), dispatch=dataclasses.replace(
        ScoredConfig().dispatch, picker="top-k", top_k=2, seed=3))
    d = create_dispatcher("scored", 3, config=config)
    assert {d.pick(DispatchRequest(f"b{i}", 10), loads, 0.0) for i in range(40)} == {1, 2}
