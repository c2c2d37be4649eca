"""The DP-dispatch hook on a real ``DataParallelController`` (built without processes)."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("sglang")
pytestmark = pytest.mark.sglang

import sglang_objects as so  # noqa: E402

from engine_dispatch.factory import create_dispatcher  # noqa: E402
from sglang_patches.decision_log import DecisionLog  # noqa: E402
from engine_dispatch.types import EngineLoad  # noqa: E402
from sglang_patches.hooks.dp_dispatch import (DpDispatchHook, ReportCoverage,  # noqa: E402
                                              dispatch_request, engine_loads)


def make_hook(policy: str = "scored") -> DpDispatchHook:
    options = {"block_tokens": 16} if policy == "scored" else {}
    return DpDispatchHook(lambda n: create_dispatcher(policy, n, **options), policy, 16,
                          lambda: DecisionLog(3, 0))


def test_snapshots_become_engine_loads() -> None:
    controller = so.dp_controller([so.snapshot(0, waiting=3, uncached_tokens=900, running=2),
                                   so.snapshot(1)], active=[0])
    zero, one = engine_loads(controller, controller.load_snapshot_reader.read_all())
    assert (zero.running, zero.waiting, zero.pending_prefill_tokens, zero.kv_capacity_tokens,
            zero.healthy) == (2, 3, 900, 4096, True)
    assert one.healthy is False  # not an active DP worker


def test_request_view_hashes_token_blocks() -> None:
    view = dispatch_request(so.tokenized_req("r", 40, routing_key="user-7"), block_tokens=16)
    assert (view.request_id, view.prompt_tokens, len(view.block_hashes)) == ("r", 40, 2)
    assert view.session_id == "user-7" and view.max_new_tokens == 8 and view.text == "x" * 40


def test_sends_to_the_less_loaded_rank_through_sock_send(caplog: pytest.LogCaptureFixture) -> None:
    hook = make_hook()
    controller = so.dp_controller([so.snapshot(0, waiting=4, uncached_tokens=5000), so.snapshot(1)])
    with caplog.at_level(logging.INFO, logger="moesched.sglang"):
        hook.total_tokens_scheduler(controller, so.tokenized_req("first", 200))
    assert [s.rids() for s in controller.workers] == [[], ["first"]]
    assert "moesched dp dispatch [scored]: first" in caplog.text and "-> rank 1" in caplog.text


def test_shared_prefixes_follow_their_caches() -> None:
    hook = make_hook()
    controller = so.dp_controller([so.snapshot(0), so.snapshot(1)], live=True)
    for rid, first_token in (("p1", 0), ("q1", 5000), ("p2", 0), ("q2", 5000)):
        hook.total_tokens_scheduler(controller, so.tokenized_req(rid, 512, first_token=first_token))
    sent = sorted(sorted(s.rids()) for s in controller.workers)
    assert sent == [["p1", "p2"], ["q1", "q2"]]  # each second copy goes where its prefix is


def test_snapshot_covers_requests_sent_before_the_previous_publish() -> None:
    coverage = ReportCoverage(1)
    request = dispatch_request(so.tokenized_req("r", 10), 16)
    loads, covered = coverage.apply([EngineLoad(0, reported_s=10.0)])
    assert loads[0].reported_s == 10.0 and covered == []  # nothing sent: fully covered
    coverage.dispatched(0, request, 10.5)
    loads, covered = coverage.apply([EngineLoad(0, reported_s=11.0)])
    assert loads[0].reported_s == 10.0 and covered == []  # r may still sit in the socket
    loads, covered = coverage.apply([EngineLoad(0, reported_s=12.0)])
    assert loads[0].reported_s == 12.0 and covered == [(0, request)]  # taken in by now


def test_explicit_rank_wins_and_inactive_ranks_are_skipped() -> None:
    hook = make_hook("round-robin")
    controller = so.dp_controller([so.snapshot(0), so.snapshot(1), so.snapshot(2)], active=[0, 2])
    hook.total_tokens_scheduler(controller, so.tokenized_req("pinned", 10, routed_dp_rank=2))
    for rid in ("r1", "r2", "r3", "r4"):
        hook.total_tokens_scheduler(controller, so.tokenized_req(rid, 10))
    sent = [s.rids() for s in controller.workers]
    assert sent[1] == [] and "pinned" in sent[2] and len(sent[0]) + len(sent[2]) == 5
