"""Pause the servers that are not being measured, for interleaved runs on one small host.

When several servers share a host and are replayed one at a time, an idle server is not always
idle: SGLang 0.5.23's data-parallel controller spins a core at 100% with no request in flight
(docs/sglang_patches.md, "DP controller idle wait"). On a 2-core machine that takes half the CPU
from the server being measured, and which server pays depends on which one happens to spin. A
:class:`ServerPauser` stops every other server's process group (``SIGSTOP``) before a replay and
continues the measured one's (``SIGCONT``); :meth:`ServerPauser.resume_all` continues all of them.
Stopped processes keep their sockets, memory and state; they only get no CPU time.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping


class ServerPauser:
    """Stops all registered process groups but the one being measured.

    Args:
        groups: endpoint label -> process group id of the server behind it (> 1, not the
            caller's own group).
    """

    def __init__(self, groups: Mapping[str, int]) -> None:
        own = os.getpgrp()
        for label, pgid in groups.items():
            if pgid <= 1 or pgid == own:
                raise ValueError(f"--pause-idle: {label}={pgid}: expected the process group of a "
                                 "server, not 0, 1 or the bench's own group")
        self.groups = dict(groups)

    def _signal(self, label: str, sig: signal.Signals) -> None:
        try:
            os.killpg(self.groups[label], sig)
        except ProcessLookupError:
            raise ValueError(f"--pause-idle: process group {self.groups[label]} of endpoint "
                             f"{label!r} is gone") from None

    def activate(self, label: str) -> None:
        """Stop every registered group except ``label``'s, then continue ``label``'s (if any)."""
        for other in self.groups:
            if other != label:
                self._signal(other, signal.SIGSTOP)
        if label in self.groups:
            self._signal(label, signal.SIGCONT)

    def resume_all(self) -> None:
        """Continue every registered group that still exists."""
        for pgid in self.groups.values():
            try:
                os.killpg(pgid, signal.SIGCONT)
            except ProcessLookupError:
                pass
