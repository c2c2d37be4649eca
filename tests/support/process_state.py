"""Test support: read and wait for a process's scheduling state from /proc (Linux)."""

from __future__ import annotations

import time


def process_state(pid: int) -> str:
    """The process's state letter from ``/proc/<pid>/stat`` (``T`` = stopped by a signal)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def wait_stopped(pid: int, stopped: bool, timeout_s: float = 5.0) -> bool:
    """Whether the process reaches the wanted stopped/not-stopped state within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (process_state(pid) == "T") == stopped:
            return True
        time.sleep(0.01)
    return False
