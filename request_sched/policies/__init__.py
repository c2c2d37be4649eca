"""Request policies, one class per module, built by name with :func:`create_queue`.

Names:
    ``fcfs``: first come, first served (vLLM and SGLang default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from request_sched.policies.fcfs import FcfsQueue
from request_sched.queue import RequestQueue

#: policy name -> constructor; keyword options are passed through.
_POLICIES: dict[str, Callable[..., RequestQueue]] = {
    "fcfs": FcfsQueue,
}

POLICY_NAMES: tuple[str, ...] = tuple(_POLICIES)


def create_queue(name: str, **options: Any) -> RequestQueue:
    """Build the waiting queue of policy ``name`` with keyword ``options``.

    Raises ValueError naming the valid policies if ``name`` is unknown, or naming the option if
    the policy does not accept it.
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
