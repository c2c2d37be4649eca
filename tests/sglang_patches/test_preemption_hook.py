"""The preemption hook on real SGLang ``PrefillAdder`` / ``ScheduleBatch`` / ``Req`` objects.

The adder and batch are SGLang's classes built without a model (``object.__new__`` plus the
attributes the preemption path reads); the KV pool is replaced by a budget of free tokens, and
the batch's ``release_req`` / ``filter_batch`` (which free real KV memory) are recorded instead.
What is real: the requests, SGLang's own token accounting methods the hook calls
(``_request_slot_reserve_for_req``, ``_get_running_request_total_token_offset``,
``rem_total_tokens``) and the hook wiring (``original`` is SGLang's method).
"""

from __future__ import annotations

import logging
import time
from array import array
from types import SimpleNamespace

import pytest

pytest.importorskip("sglang")
pytestmark = pytest.mark.sglang

import sglang_objects as so  # noqa: E402
from sglang.srt.managers.schedule_batch import ScheduleBatch  # noqa: E402
from sglang.srt.managers.schedule_policy import PrefillAdder, SchedulePolicy  # noqa: E402
from sglang.srt.mem_cache.radix_cache import RadixCache  # noqa: E402

from request_sched.policies import create_queue  # noqa: E402
from request_sched.preemption import PreemptionRule  # noqa: E402
from request_sched.types import WaitingRequest  # noqa: E402
from sglang_patches.decision_log import DecisionLog  # noqa: E402
from sglang_patches.hooks.preemption import PreemptionHook  # noqa: E402
from sglang_patches.hooks.request_order import RequestOrderHooks, WaitingQueueOrderer  # noqa: E402

ORIGINAL = PrefillAdder.preempt_to_schedule
SHORT, LONG = 50, 1500


@pytest.fixture(scope="module", autouse=True)
def runtime() -> None:
    if not so.TINY_MODEL.is_dir():
        pytest.skip(f"needs {so.TINY_MODEL} (make engines)")
    so.publish_server_args("--enable-priority-scheduling")


def trained_hooks(max_wait_s: float = 60.0) -> tuple[PreemptionHook, RequestOrderHooks]:
    """Request-order hooks whose sjf-aging predictor learnt short -> 8 tokens, long -> 40 (400
    samples each, so the shrinkage towards the all-request mean moves them by < 2%)."""
    queue = create_queue("sjf-aging", max_wait_s=max_wait_s, cap_by_max_tokens=False)
    for i in range(400):
        queue.on_finished(WaitingRequest(f"s{i}", 0.0, SHORT, 512), 8)
        queue.on_finished(WaitingRequest(f"l{i}", 0.0, LONG, 512), 40)
    order = RequestOrderHooks(lambda: WaitingQueueOrderer(queue, "sjf-aging", 128, DecisionLog(0, 0)))
    preemption = PreemptionHook(order, lambda q: PreemptionRule(
        q.job_size.predictor, 4.0, q.max_wait_s, max_preemptions=1), DecisionLog(0, 0))
    return preemption, order


def adder_with_running(running: list, free_tokens: int = 100_000) -> tuple[PrefillAdder, list]:
    """A ``PrefillAdder`` over a running batch of ``running``; returns it and the release record."""
    released: list = []
    batch = object.__new__(ScheduleBatch)
    batch.reqs = list(running)
    batch.release_req = lambda i, remaining, offload_kv=True: released.append(batch.reqs[i].rid)
    batch.filter_batch = lambda keep_indices: setattr(batch, "reqs", [batch.reqs[i] for i in keep_indices])
    adder = object.__new__(PrefillAdder)
    adder.running_batch = batch
    adder.preempt_list = []
    adder.new_token_ratio = 1.0
    adder.memory_budget = SimpleNamespace(total_offset=0, remaining_total=free_tokens)
    adder.token_to_kv_pool_allocator = SimpleNamespace(request_slot_reserve=lambda **kw: 0)
    return adder, released


def running_req(rid: str, prompt: int, generated: int) -> object:
    req = so.waiting_req(rid, prompt, max_new_tokens=64)
    req.output_ids = array("q", range(generated))
    return req


def see(order: RequestOrderHooks, *reqs: object) -> SchedulePolicy:
    """Let the request-order hook see ``reqs`` waiting (records their first enqueue time); the
    caller keeps the returned policy alive, as a scheduler does (orderers are kept per policy)."""
    policy = SchedulePolicy("fcfs", RadixCache.create_simulated(), False, False, False)
    order.calc_priority(SchedulePolicy.calc_priority, policy, list(reqs), None, processed_tokens=0)
    return policy


def test_short_request_takes_the_slot_of_the_longest_running(caplog: pytest.LogCaptureFixture) -> None:
    preemption, order = trained_hooks()
    candidate = so.waiting_req("short", SHORT, max_new_tokens=8)
    running = [running_req("long-a", LONG, 30), running_req("long-b", LONG, 2),
               running_req("short-r", SHORT, 1)]
    policy = see(order, candidate, *running)
    adder, released = adder_with_running(running)
    with caplog.at_level(logging.INFO, logger="moesched.sglang"):
        assert preemption.preempt_to_schedule(ORIGINAL, adder, candidate) is True
    assert released == ["long-b"] and [r.rid for r in adder.preempt_list] == ["long-b"]
    assert [r.rid for r in adder.running_batch.reqs] == ["long-a", "short-r"]
    assert adder.memory_budget.total_offset == -(64 - 2)  # long-b's reserved future tokens back
    assert "moesched preempt #1 (size ratio >= 4): short(prompt=50" in caplog.text
    assert "takes the slot of long-b(prompt=1500 generated=2" in caplog.text


def test_long_request_waits_until_overdue_then_preempts() -> None:
    preemption, order = trained_hooks(max_wait_s=5.0)
    candidate = so.waiting_req("long", LONG, max_new_tokens=40)
    running = [running_req("long-r", LONG, 5), running_req("short-r", SHORT, 1)]
    policy = see(order, candidate, *running)
    adder, released = adder_with_running(running)
    assert preemption.preempt_to_schedule(ORIGINAL, adder, candidate) is False and released == []
    assert policy in order.orderers
    orderer = next(iter(order.orderers.values()))
    orderer._seen[candidate].enqueue_s = time.perf_counter() - 6.0  # waited past max_wait_s
    assert preemption.preempt_to_schedule(ORIGINAL, adder, candidate) is True
    assert released == ["long-r"]


def test_once_preempted_requests_and_memory_shortfall_are_respected() -> None:
    preemption, order = trained_hooks()
    candidate = so.waiting_req("short", SHORT, max_new_tokens=8)
    protected = running_req("long-p", LONG, 2)
    protected.retraction_count = 1
    policy = see(order, candidate, protected)
    adder, released = adder_with_running([protected])
    assert preemption.preempt_to_schedule(ORIGINAL, adder, candidate) is False
    victim = running_req("long-v", LONG, 2)
    adder, released = adder_with_running([victim], free_tokens=-1000)  # one victim frees 62 tokens
    assert preemption.preempt_to_schedule(ORIGINAL, adder, candidate) is False and released == []
    assert policy in order.orderers


def test_without_an_orderer_sglang_decides() -> None:
    preemption, _ = trained_hooks()  # no calc_priority pass yet: no orderer in this process
    calls: list = []
    assert preemption.preempt_to_schedule(lambda adder, req: calls.append(req.rid) or False,
                                          object(), so.waiting_req("x", 10)) is False
    assert calls == ["x"]
