"""The DP controller's blocking receive loop, on a real ZeroMQ socket pair and SGLang's watchdog."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("sglang")
pytestmark = pytest.mark.sglang

import sglang_objects as so  # noqa: E402
import zmq  # noqa: E402
from sglang.srt.managers.data_parallel_controller import DataParallelController  # noqa: E402
from sglang.srt.managers.io_struct import sock_send  # noqa: E402
from sglang.srt.utils.watchdog import Watchdog  # noqa: E402

from sglang_patches.hooks import dp_idle  # noqa: E402


class StopLoop(Exception):
    """Raised by the test dispatcher to leave the endless loop."""


def test_requests_dispatched_in_order_and_the_idle_wait_spends_no_cpu() -> None:
    context = zmq.Context()
    pull, push = context.socket(zmq.PULL), context.socket(zmq.PUSH)
    pull.bind("inproc://moesched-dp-idle")
    push.connect("inproc://moesched-dp-idle")
    controller = object.__new__(DataParallelController)
    controller.recv_from_tokenizer = pull
    controller.soft_watchdog = Watchdog.create("test", watchdog_timeout=300.0, soft=True)
    seen: list[tuple[str, bool]] = []

    def dispatcher(request: object) -> None:
        seen.append((request.rid, controller.soft_watchdog._active))
        if request.rid == "stop":
            raise StopLoop

    controller._request_dispatcher = dispatcher
    errors: list[BaseException] = []

    def run() -> None:
        try:
            dp_idle.blocking_event_loop(controller)
        except BaseException as exc:  # noqa: BLE001 - the thread reports how it ended
            errors.append(exc)

    loop = threading.Thread(target=run, daemon=True)
    loop.start()
    for rid in ("a", "b"):
        sock_send(push, so.tokenized_req(rid, 8))
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    cpu_before = time.process_time()
    time.sleep(0.5)  # nothing arrives: a spinning loop would burn ~0.5 s of CPU here
    idle_cpu = time.process_time() - cpu_before
    assert controller.soft_watchdog._active is False  # waiting is not being stuck
    sock_send(push, so.tokenized_req("stop", 8))
    loop.join(timeout=10)
    assert seen == [("a", True), ("b", True), ("stop", True)]
    assert len(errors) == 1 and isinstance(errors[0], StopLoop)
    assert idle_cpu < 0.1
    context.destroy(linger=0)


def test_registered_as_the_controller_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    monkeypatch.setitem(HookRegistry._hooks, dp_idle.EVENT_LOOP, [])  # restored afterwards
    dp_idle.register()
    hooks = HookRegistry._hooks[dp_idle.EVENT_LOOP]
    assert (HookType.REPLACE, dp_idle.blocking_event_loop) in [(t, h) for t, h, _ in hooks]
