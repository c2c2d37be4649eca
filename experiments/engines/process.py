"""Server processes: spawn in their own process group, find, measure and stop them, pid files.

A server is started as the leader of a new session, so its process group id equals its pid and
every worker it spawns (vLLM's engine core, SGLang's scheduler and detokenizer) shares that group:
stopping the group stops them all. Linux only (reads ``/proc``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from experiments.engines.errors import EngineError
from moesched_base.atomic import atomic_write_json

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class PidRecord:
    """What a pid file holds about one running server.

    ``start_ticks`` is the leader's start time (clock ticks since boot, ``/proc/<pid>/stat`` field
    22): a pid reused by another process has a different one, so a stale file never kills it.
    """

    kind: str
    pid: int
    start_ticks: int
    port: int
    base_url: str
    model_name: str
    log_path: str


def write_pid_file(path: Path, record: PidRecord) -> None:
    """Atomically write ``record`` as JSON to ``path``."""
    atomic_write_json(path, asdict(record))


def read_pid_file(path: Path) -> PidRecord:
    """Read a pid file; raises ``EngineError`` naming the file if it is missing or malformed."""
    try:
        data = json.loads(Path(path).read_text())
        return PidRecord(**{name: data[name] for name in PidRecord.__dataclass_fields__})
    except FileNotFoundError:
        raise EngineError(f"pid file {path} not found") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EngineError(f"pid file {path} is not a server record "
                          f"(expected JSON with {', '.join(PidRecord.__dataclass_fields__)}): {exc}") from None


def spawn(argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen:
    """Start ``argv`` as a new session leader, stdout and stderr appended to ``log_path``; the
    session runs at the caller's priority (:func:`carry_priority_to_session`)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    carry_priority_to_session(process.pid)
    return process


def carry_priority_to_session(pid: int) -> None:
    """Give the session led by ``pid`` the caller's nice value as its autogroup priority.

    With ``kernel.sched_autogroup_enabled`` (on here), the scheduler first shares CPU time between
    sessions and applies nice values only inside one, so a server started in its own session by a
    caller under ``nice -n -15`` would otherwise compete with every other session as an equal.
    Writing the value to ``/proc/<pid>/autogroup`` sets the whole session's weight. Best effort: a
    kernel without autogroups, or a caller not allowed to raise priority, leaves the default.
    """
    niceness = os.getpriority(os.PRIO_PROCESS, 0)
    if niceness == 0:
        return
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(niceness))
    except OSError:
        pass


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of ``/proc/<pid>/stat`` (state first), or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # the command name may contain spaces and ')'


def start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None if it does not exist."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def group_members(pgid: int) -> list[int]:
    """Pids of the live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields and fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry))
    return members


def pin_group(pgid: int, cores: set[int]) -> int:
    """Restrict every thread of every process in group ``pgid`` to CPU ``cores``; returns the
    number of threads pinned (threads that exit meanwhile are skipped)."""
    pinned = 0
    for pid in group_members(pgid):
        try:
            threads = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue  # exited meanwhile
        for tid in threads:
            try:
                os.sched_setaffinity(int(tid), cores)
                pinned += 1
            except (ProcessLookupError, FileNotFoundError):
                pass
    return pinned


def group_rss_bytes(pgid: int) -> int:
    """Resident memory of all processes in group ``pgid``, in bytes (shared pages counted per process)."""
    total = 0
    for pid in group_members(pgid):
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
        except (OSError, IndexError, ValueError):
            pass  # exited meanwhile
    return total


def record_is_current(record: PidRecord) -> bool:
    """True if ``record``'s server group still has processes (and its leader, if alive, is the same)."""
    ticks = start_ticks(record.pid)
    if ticks is not None:
        return ticks == record.start_ticks
    return bool(group_members(record.pid))


def stop_group(pgid: int, grace_s: float = 20.0, child: subprocess.Popen | None = None) -> str:
    """Send SIGTERM to process group ``pgid``, then SIGKILL after ``grace_s`` seconds.

    ``child`` is the leader's Popen if this process started it (so it gets reaped). Returns how the
    group ended: ``"terminated"``, ``"killed"`` or ``"not running"``.
    """

    def gone() -> bool:
        if child is not None:
            child.poll()
        return not group_members(pgid)

    if gone():
        return "not running"
    for sig, wait_s, outcome in ((signal.SIGTERM, grace_s, "terminated"), (signal.SIGKILL, 10.0, "killed")):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return outcome
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if gone():
                return outcome
            time.sleep(0.1)
    raise EngineError(f"process group {pgid} survived SIGKILL for 10 s")


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of ``path`` (empty if it cannot be read)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
