"""The request-order hook on real SGLang ``SchedulePolicy`` / ``Req`` / ``RadixCache`` objects.

The hook functions are called directly with SGLang's unpatched method as ``original`` (the
process-wide patching through ``load_plugins`` is covered in test_plugin_process.py).
"""

from __future__ import annotations

import logging
import sys

import pytest

pytest.importorskip("sglang")
pytestmark = pytest.mark.sglang

import sglang_objects as so  # noqa: E402
from sglang.srt.managers.schedule_batch import FINISH_ABORT, FINISH_LENGTH  # noqa: E402
from sglang.srt.managers.schedule_policy import SchedulePolicy  # noqa: E402
from sglang.srt.mem_cache.base_prefix_cache import InsertParams  # noqa: E402
from sglang.srt.mem_cache.radix_cache import RadixCache, RadixKey  # noqa: E402

from request_sched.policies import create_queue  # noqa: E402
from sglang_patches.decision_log import DecisionLog  # noqa: E402
from sglang_patches.hooks.request_order import (PRIORITY_LIMIT, RequestOrderHooks,  # noqa: E402
                                                WaitingQueueOrderer)

ORIGINAL = SchedulePolicy.calc_priority


@pytest.fixture(scope="module", autouse=True)
def runtime() -> None:
    if not so.TINY_MODEL.is_dir():
        pytest.skip(f"needs {so.TINY_MODEL} (make engines)")
    so.publish_server_args()


def make_hooks(**options: object) -> RequestOrderHooks:
    options.setdefault("max_wait_s", 600.0)
    return RequestOrderHooks(lambda: WaitingQueueOrderer(
        create_queue("sjf-aging", **options), "sjf-aging", 128, DecisionLog(2, 0)))


def fcfs_policy(priority: bool = False, low_first: bool = False) -> SchedulePolicy:
    return SchedulePolicy("fcfs", RadixCache.create_simulated(), False, priority, low_first)


def test_shortest_job_first_and_log(caplog: pytest.LogCaptureFixture) -> None:
    hooks, policy = make_hooks(), fcfs_policy()
    queue = [so.waiting_req("long", 3000), so.waiting_req("short", 50), so.waiting_req("mid", 500)]
    with caplog.at_level(logging.INFO, logger="moesched.sglang"):
        hooks.calc_priority(ORIGINAL, policy, queue, None, processed_tokens=0)
    assert [r.rid for r in queue] == ["short", "mid", "long"]
    assert "SGLang's own order would admit long" in caplog.text


def test_cached_prefix_makes_a_long_prompt_short() -> None:
    hooks, policy = make_hooks(), fcfs_policy()
    cached = so.waiting_req("cached", 3000)
    policy.tree_cache.insert(InsertParams(key=RadixKey(cached.origin_input_ids[:2990])))
    queue = [so.waiting_req("fresh", 500, first_token=7), cached]
    hooks.calc_priority(ORIGINAL, policy, queue)
    assert cached.num_matched_prefix_tokens == 2990  # matched with SGLang's match_kv_cache
    assert [r.rid for r in queue] == ["cached", "fresh"]


@pytest.mark.parametrize("low_first, expected", [(True, ["p-5", "p5", "none"]),
                                                 (False, ["p5", "p-5", "none"])])
def test_priority_scheduling_convention(low_first: bool, expected: list[str]) -> None:
    """Requests named by their SGLang priority. Low-values-first: -5 is the most urgent, else 5.
    Without a priority SGLang sets its sentinel (least urgent), which stays a finite class."""
    hooks = make_hooks(priority_weight_s=100.0)
    policy = fcfs_policy(priority=True, low_first=low_first)
    queue = [so.waiting_req("p5", 10, priority=5), so.waiting_req("p-5", 3000, priority=-5),
             so.waiting_req("none", 10, priority=sys.maxsize if low_first else -sys.maxsize - 1)]
    hooks.calc_priority(ORIGINAL, policy, queue)
    assert [r.rid for r in queue] == expected
    assert hooks.orderers[policy]._queued["none"][1].priority == -PRIORITY_LIMIT


def test_requests_leave_and_retracted_ones_keep_their_first_enqueue_time() -> None:
    hooks, policy = make_hooks(), fcfs_policy()
    first, other = so.waiting_req("a", 100), so.waiting_req("b", 200)
    hooks.calc_priority(ORIGINAL, policy, [first, other])
    orderer = hooks.orderers[policy]
    entered = orderer._queued["a"][1].enqueue_s
    hooks.calc_priority(ORIGINAL, policy, [other])  # "a" was admitted
    assert set(orderer._queued) == {"b"} and len(orderer.queue) == 1
    first.output_ids.extend([1, 2, 3])  # it decoded 3 tokens, then SGLang retracted it
    first.time_stats.set_wait_queue_entry_time()  # SGLang re-stamps the entry time
    hooks.calc_priority(ORIGINAL, policy, [other, first])
    again = orderer._queued["a"][1]
    assert again.enqueue_s == entered and again.generated_tokens == 3


def test_finished_requests_feed_the_predictor_aborted_ones_do_not() -> None:
    hooks, policy = make_hooks(), fcfs_policy()
    done, aborted = so.waiting_req("done", 100), so.waiting_req("aborted", 100)
    hooks.calc_priority(ORIGINAL, policy, [done, aborted])
    done.output_ids.extend(range(16))
    done.finished_reason = FINISH_LENGTH(length=16)
    aborted.finished_reason = FINISH_ABORT()
    hooks.after_release(None, done, policy.tree_cache, checkpoint=True)
    hooks.after_release(None, aborted, policy.tree_cache, checkpoint=False)
    assert hooks.orderers[policy].finished_fed == 1


def test_other_sglang_policies_are_left_alone() -> None:
    hooks = make_hooks()
    policy = SchedulePolicy("lof", RadixCache.create_simulated(), False, False, False)
    queue = [so.waiting_req("few", 10, max_new_tokens=4), so.waiting_req("many", 3000,
                                                                        max_new_tokens=400)]
    hooks.calc_priority(ORIGINAL, policy, queue)
    assert [r.rid for r in queue] == ["many", "few"]  # SGLang's longest-output-first
    assert not hooks.orderers


def test_a_fault_keeps_sglang_order_and_resets_state(caplog: pytest.LogCaptureFixture) -> None:
    hooks, policy = make_hooks(), fcfs_policy()
    queue = [so.waiting_req("x", 300), so.waiting_req("x", 30)]  # duplicate rid: the queue refuses
    with caplog.at_level(logging.ERROR, logger="moesched.sglang"):
        hooks.calc_priority(ORIGINAL, policy, queue)
    assert [len(r.origin_input_ids) for r in queue] == [300, 30]
    assert policy not in hooks.orderers and "SGLang's order kept" in caplog.text
