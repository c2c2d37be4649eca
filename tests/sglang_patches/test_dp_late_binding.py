"""Late binding in a real ``DataParallelController`` (built without processes): requests held while
their rank is full, sent when a snapshot shows room, moved between ranks, each sent exactly once;
the late-binding event loop on a real ZeroMQ socket pair."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("sglang")
pytestmark = pytest.mark.sglang

import msgspec  # noqa: E402
import sglang_objects as so  # noqa: E402
import zmq  # noqa: E402
from sglang.srt.managers.io_struct import sock_send  # noqa: E402
from sglang.srt.utils.watchdog import Watchdog  # noqa: E402

from engine_dispatch.factory import create_dispatcher  # noqa: E402
from engine_dispatch.late_binding import HoldParams, LateBindingConfig  # noqa: E402
from engine_dispatch.rebalance import RebalanceConfig, SelectiveRebalancer  # noqa: E402
from perf_model.presets import preset_model  # noqa: E402
from request_sched.policies import create_queue  # noqa: E402
from request_sched.policies.fcfs import FcfsQueue  # noqa: E402
from request_sched.queue import RequestQueue  # noqa: E402
from sglang_patches.decision_log import DecisionLog  # noqa: E402
from sglang_patches.hooks.dp_dispatch import DpDispatchHook  # noqa: E402
from sglang_patches.hooks.dp_late_binding import ControllerHold, LateBindingLoop  # noqa: E402

MODEL = preset_model("qwen3-30b-a3b-h100")
EAGER = RebalanceConfig(long_wait_s=0.0, cooldown_s=0.0, overload_abs_s=0.0, period_s=1e-3,
                        max_moves_per_s=1000.0, max_burst=8)


def make_hook(max_in_flight: int, rebalance: RebalanceConfig = RebalanceConfig(),
              policy: str = "round-robin",
              make_queue: Callable[[], RequestQueue] = FcfsQueue) -> DpDispatchHook:
    late = LateBindingConfig(HoldParams(max_in_flight=max_in_flight), rebalance)
    options = {"block_tokens": 16} if policy == "scored" else {}
    return DpDispatchHook(lambda n: create_dispatcher(policy, n, **options), policy, 16,
                          lambda: DecisionLog(3, 0),
                          lambda n, dispatcher: ControllerHold(late, SelectiveRebalancer(rebalance, MODEL),
                                                               n, dispatcher, make_queue))


def publish(controller: object, rank: int, running: int, waiting: int = 0,
            uncached_tokens: int = 0) -> None:
    """Rank ``rank`` publishes a new snapshot (a later timestamp than every earlier one)."""
    reader = controller.load_snapshot_reader
    time.sleep(1e-3)  # snapshots and dispatch share time.time(): keep them ordered
    reader.snapshots[rank] = msgspec.structs.replace(
        so.snapshot(rank, waiting, uncached_tokens, running), timestamp=time.time())


def test_full_rank_holds_and_a_snapshot_with_room_releases_in_arrival_order() -> None:
    hook = make_hook(max_in_flight=2)
    controller = so.dp_controller([so.snapshot(0, running=2), so.snapshot(1, running=2)])
    for rid in ("a", "b", "c", "d"):
        hook.total_tokens_scheduler(controller, so.tokenized_req(rid, 100))
    assert [s.rids() for s in controller.workers] == [[], []]  # both ranks full: all held
    assert hook.tick(controller) is True  # nothing changed: still held
    publish(controller, 0, running=1)  # one slot free on rank 0
    assert hook.tick(controller) is True
    assert [s.rids() for s in controller.workers] == [["a"], []]
    publish(controller, 0, running=0)
    publish(controller, 1, running=0)
    assert hook.tick(controller) is False  # rank 0: "a" in flight + "c"; rank 1: "b", "d"
    assert [s.rids() for s in controller.workers] == [["a", "c"], ["b", "d"]]


def test_held_requests_leave_in_the_request_policys_order() -> None:
    hook = make_hook(max_in_flight=1, make_queue=lambda: create_queue("sjf-aging", cap_by_max_tokens=False))
    controller = so.dp_controller([so.snapshot(0, running=1)])
    for rid, tokens in (("long", 1800), ("short", 40), ("mid", 600)):
        hook.total_tokens_scheduler(controller, so.tokenized_req(rid, tokens))
    for _ in range(10):  # the rank empties and reports it twice (the second covers what was sent)
        publish(controller, 0, running=0)
        hook.tick(controller)
    assert controller.workers[0].rids() == ["short", "mid", "long"]


def test_requests_sent_before_a_snapshot_counts_them_fill_the_rank() -> None:
    hook = make_hook(max_in_flight=2)
    controller = so.dp_controller([so.snapshot(0)])
    for rid in ("a", "b", "c"):
        hook.total_tokens_scheduler(controller, so.tokenized_req(rid, 100))
    assert controller.workers[0].rids() == ["a", "b"]  # "c" held: two sent, no snapshot yet
    publish(controller, 0, running=2)  # counts "a", "b" (may still be in the socket: kept)
    publish(controller, 0, running=2)  # now surely covers them: 2 reported + 0 in flight
    assert hook.tick(controller) is True and controller.workers[0].rids() == ["a", "b"]
    publish(controller, 0, running=1)
    assert hook.tick(controller) is False and controller.workers[0].rids() == ["a", "b", "c"]


def test_held_requests_move_to_the_rank_that_frees_up() -> None:
    hook = make_hook(max_in_flight=1, rebalance=EAGER)
    controller = so.dp_controller([so.snapshot(0, running=1, uncached_tokens=4000),
                                   so.snapshot(1, running=1)])
    for rid in ("a", "b", "c", "d"):
        hook.total_tokens_scheduler(controller, so.tokenized_req(rid, 2000))
    publish(controller, 1, running=0)  # rank 1 finished; rank 0 still busy with a long prefill
    while hook.tick(controller):
        publish(controller, 1, running=0)
    sent = [s.rids() for s in controller.workers]
    assert sent[0] == [] and sorted(sent[1]) == ["a", "b", "c", "d"]  # rank 0's held ones moved
    state = hook._state_of(controller)
    assert state.hold.moved >= 1 and state.hold.held_count() == 0


def test_with_rebalancing_off_held_requests_wait_for_their_rank() -> None:
    hook = make_hook(max_in_flight=1, rebalance=dataclasses.replace(EAGER, enabled=False))
    controller = so.dp_controller([so.snapshot(0, running=1, uncached_tokens=4000),
                                   so.snapshot(1, running=1)])
    for rid in ("a", "b", "c", "d"):  # round robin: a, c -> rank 0; b, d -> rank 1
        hook.total_tokens_scheduler(controller, so.tokenized_req(rid, 2000))
    for _ in range(6):
        publish(controller, 1, running=0)
        hook.tick(controller)
    assert [s.rids() for s in controller.workers] == [[], ["b", "d"]]
    state = hook._state_of(controller)
    assert state.hold.moved == 0 and state.hold.held_count() == 2
    publish(controller, 0, running=0)
    while hook.tick(controller):
        publish(controller, 0, running=0)
    assert controller.workers[0].rids() == ["a", "c"]


def test_inactive_rank_strands_nothing() -> None:
    hook = make_hook(max_in_flight=1)
    controller = so.dp_controller([so.snapshot(0, running=1), so.snapshot(1, running=1)])
    for rid in ("a", "b"):
        hook.total_tokens_scheduler(controller, so.tokenized_req(rid, 10))
    controller._active_workers = [1]  # rank 0 leaves the active set
    publish(controller, 1, running=0)
    while hook.tick(controller):
        publish(controller, 1, running=0)
    # "a" (held on rank 0) is re-picked onto rank 1, ahead of "b", which was held after it
    assert [s.rids() for s in controller.workers] == [[], ["a", "b"]]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.one_of(
    st.tuples(st.just("arrive"), st.integers(1, 3000)),
    st.tuples(st.just("publish"), st.integers(0, 2), st.integers(0, 3), st.integers(0, 9000)),
    st.tuples(st.just("tick"))), max_size=60),
    max_in_flight=st.integers(1, 3), policy=st.sampled_from(["round-robin", "scored"]))
def test_every_request_is_sent_exactly_once_and_never_into_a_full_rank(
        steps: list[tuple], max_in_flight: int, policy: str) -> None:
    hook = make_hook(max_in_flight, EAGER, policy)
    controller = so.dp_controller([so.snapshot(rank) for rank in range(3)])
    arrived = []

    def check_caps(sent_before: list[int]) -> None:
        """A rank that got a request in this step was below its cap: at most full now (a report
        alone may say more: the engine's own admissions)."""
        hold = hook._state_of(controller).hold
        for rank, socket in enumerate(controller.workers):
            if len(socket.sent) > sent_before[rank]:
                assert hold.queues.occupied(rank) <= max_in_flight

    for step in steps:
        sent_before = [len(socket.sent) for socket in controller.workers]
        if step[0] == "arrive":
            rid = f"r{len(arrived)}"
            arrived.append(rid)
            hook.total_tokens_scheduler(controller, so.tokenized_req(rid, step[1], first_token=len(arrived)))
        elif step[0] == "publish":
            publish(controller, step[1], running=step[2], uncached_tokens=step[3])
        else:
            hook.tick(controller)
        if arrived:
            check_caps(sent_before)
    for _ in range(4 * len(arrived) + 2):  # drain: every rank empties, reports it, ticks
        for rank in range(3):
            publish(controller, rank, running=0)
        if not hook.tick(controller):
            break
    sent = [rid for socket in controller.workers for rid in socket.rids()]
    assert sorted(sent) == sorted(arrived)  # none lost, none duplicated


def test_event_loop_ticks_while_holding_and_blocks_when_not() -> None:
    context = zmq.Context()
    pull, push = context.socket(zmq.PULL), context.socket(zmq.PUSH)
    pull.bind("inproc://moesched-dp-late")
    push.connect("inproc://moesched-dp-late")
    hook = make_hook(max_in_flight=1)
    controller = so.dp_controller([so.snapshot(0, running=1)])
    controller.recv_from_tokenizer = pull
    controller.soft_watchdog = Watchdog.create("test", watchdog_timeout=300.0, soft=True)
    controller._request_dispatcher = lambda req: hook.total_tokens_scheduler(controller, req)
    ticks = []

    def tick(c: object) -> bool:
        ticks.append(time.monotonic())
        return hook.tick(c)

    loop = LateBindingLoop(tick, tick_s=0.02)
    threading.Thread(target=loop.event_loop, args=(controller,), daemon=True).start()
    sock_send(push, so.tokenized_req("held", 8))
    time.sleep(0.3)  # held: the loop wakes every 20 ms
    assert controller.workers[0].rids() == [] and len(ticks) >= 5
    publish(controller, 0, running=0)
    deadline = time.monotonic() + 5
    while not controller.workers[0].rids() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert controller.workers[0].rids() == ["held"]
    time.sleep(0.05)
    settled = len(ticks)
    cpu_before = time.process_time()
    time.sleep(0.4)  # nothing held, nothing arrives: the loop blocks
    assert len(ticks) == settled and time.process_time() - cpu_before < 0.1
    assert controller.soft_watchdog._active is False
    context.destroy(linger=0)


def test_plugin_registers_the_late_binding_loop_instead_of_the_idle_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from collections import defaultdict

    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    from sglang_patches import plugin
    from sglang_patches.config import CONFIG_ENV, ENABLE_ENV
    from sglang_patches.hooks import dp_idle

    monkeypatch.setattr(HookRegistry, "_hooks", defaultdict(list))  # the real registry is restored
    config = tmp_path / "moesched.toml"
    config.write_text("[dp_controller]\nlate_binding = true\n[dp_controller.hold]\ntick_s = 0.05\n")
    monkeypatch.setenv(ENABLE_ENV, "1")
    monkeypatch.setenv(CONFIG_ENV, str(config))
    plugin.load()
    loops = [hook for kind, hook, _ in HookRegistry._hooks[dp_idle.EVENT_LOOP] if kind == HookType.REPLACE]
    assert len(loops) == 1 and isinstance(loops[0].__self__, LateBindingLoop)
    assert loops[0].__self__._tick_ms == 50
    dispatch = loops[0].__self__._tick.__self__  # the DpDispatchHook whose tick the loop calls
    hold = dispatch._make_hold(2, create_dispatcher("round-robin", 2))
    assert type(hold.queues._queues[0]).__name__ == "SjfAgingQueue"  # the [request] default policy
