"""Request policies, one class per module, built by name with :func:`create_queue`.

Names (keyword options go to the class constructor):
    ``fcfs``: first come, first served, vLLM's and SGLang's default (:class:`FcfsQueue`).
    ``sjf-aging``: ours, SJF on job size in seconds with linear priority-aware aging and a
        starvation bound (:class:`SjfAgingQueue`; ``step_model=`` a model or perf_model spec).
    ``hrrn``: SGLang 0.5.23's highest response ratio next with token-based aging (:class:`HrrnQueue`).
    ``lpm``: SGLang 0.5.23's longest prefix match (:class:`LpmQueue`).
    ``vllm-sjf``: vLLM's sigmoid time-and-length SJF (:class:`VllmSjfQueue`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from request_sched.policies.fcfs import FcfsQueue
from request_sched.policies.hrrn import HrrnQueue
from request_sched.policies.lpm import LpmQueue
from request_sched.policies.sjf_aging import SjfAgingQueue
from request_sched.policies.vllm_sjf import VllmSjfQueue
from request_sched.queue import RequestQueue

#: policy name -> constructor; keyword options are passed through.
_POLICIES: dict[str, Callable[..., RequestQueue]] = {
    "fcfs": FcfsQueue,
    "sjf-aging": SjfAgingQueue,
    "hrrn": HrrnQueue,
    "lpm": LpmQueue,
    "vllm-sjf": VllmSjfQueue,
}

POLICY_NAMES: tuple[str, ...] = tuple(_POLICIES)

__all__ = [
    "POLICY_NAMES", "FcfsQueue", "HrrnQueue", "LpmQueue", "SjfAgingQueue", "VllmSjfQueue",
    "create_queue",
]


def create_queue(name: str, **options: Any) -> RequestQueue:
    """Build the waiting queue of policy ``name`` with keyword ``options``.

    Raises ValueError naming the valid policies if ``name`` is unknown, or naming the options if
    the policy does not accept them.
    """
    try:
        factory = _POLICIES[name]
    except KeyError:
        raise ValueError(
            f"unknown request policy {name!r}; expected one of {', '.join(_POLICIES)}"
        ) from None
    try:
        return factory(**options)
    except TypeError as exc:
        raise ValueError(f"request policy {name!r}: bad options {sorted(options)}: {exc}") from None
