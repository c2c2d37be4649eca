"""Hook: the data-parallel controller waits for requests instead of spinning on its socket.

REPLACE ``DataParallelController.event_loop`` (``srt/managers/data_parallel_controller.py``).
Stock SGLang 0.5.23 drains the tokenizer socket with non-blocking receives in an endless loop, so
the DP controller process keeps one CPU core at 100% even when no request arrives (measured here:
`top` shows it at 100% of a core on an idle `--dp-size 2` server, while both schedulers sleep).
On a GPU host that is one core lost to tokenisation and the schedulers' own Python work; on a small
CPU host it takes a core from the DP ranks themselves.

The replacement receives with a blocking call, the way SGLang's own detokenizer loop does: the
soft watchdog is disabled while the process waits (an idle controller is not a stuck one) and fed
after each dispatched request. A blocking ZeroMQ receive releases the GIL and returns as soon as a
message arrives, so dispatch order and latency are unchanged; the requests go to
``_request_dispatcher`` exactly as before, one at a time, in arrival order.
"""

from __future__ import annotations

from sglang.srt.managers.data_parallel_controller import DataParallelController
from sglang.srt.managers.io_struct import sock_recv
from sglang.srt.plugins.hook_registry import HookRegistry, HookType

EVENT_LOOP = "sglang.srt.managers.data_parallel_controller.DataParallelController.event_loop"


def blocking_event_loop(controller: DataParallelController) -> None:
    """Receive each tokenized request (blocking) and hand it to SGLang's dispatcher, forever."""
    while True:
        with controller.soft_watchdog.disable():
            request = sock_recv(controller.recv_from_tokenizer)
        controller._request_dispatcher(request)
        controller.soft_watchdog.feed()


def register() -> None:
    """Register the REPLACE hook with SGLang's ``HookRegistry``."""
    HookRegistry.register(EVENT_LOOP, blocking_event_loop, HookType.REPLACE)
