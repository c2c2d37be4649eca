"""experiments.bench.pause: other servers' process groups stopped during a replay, all continued after."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from process_state import wait_stopped

from experiments.bench.pause import ServerPauser


@pytest.fixture
def sessions() -> Iterator[list[subprocess.Popen]]:
    """Two sleeping processes, each the leader of its own session (as engine servers are)."""
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
             for _ in range(2)]
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def test_activate_stops_the_others_and_resume_all_continues_everyone(sessions) -> None:
    a, b = sessions
    pauser = ServerPauser({"a": a.pid, "b": b.pid})
    pauser.activate("a")
    assert wait_stopped(b.pid, stopped=True) and wait_stopped(a.pid, stopped=False)
    pauser.activate("b")
    assert wait_stopped(a.pid, stopped=True) and wait_stopped(b.pid, stopped=False)
    pauser.activate("unregistered")  # an endpoint without a group: every registered one stops
    assert wait_stopped(a.pid, stopped=True) and wait_stopped(b.pid, stopped=True)
    pauser.resume_all()
    assert wait_stopped(a.pid, stopped=False) and wait_stopped(b.pid, stopped=False)


def test_bad_groups_are_one_line_errors(sessions) -> None:
    with pytest.raises(ValueError, match="not 0, 1 or the bench's own group"):
        ServerPauser({"a": os.getpgrp()})
    gone = sessions[0]
    gone.kill()
    gone.wait()
    with pytest.raises(ValueError, match=f"process group {gone.pid} of endpoint 'a' is gone"):
        ServerPauser({"a": gone.pid}).activate("b")
