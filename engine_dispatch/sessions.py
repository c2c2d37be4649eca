"""Session affinity: which engine a session (user / conversation id) last went to, with a TTL."""

from __future__ import annotations

from collections import OrderedDict


class SessionTable:
    """Bounded map ``session_id -> (engine_id, last_seen_s)``; entries expire ``ttl_s`` after use.

    Args:
        ttl_s: seconds after its last request that a session forgets its engine, > 0.
        max_sessions: most sessions remembered; the least recently used is dropped beyond it.
    """

    def __init__(self, ttl_s: float, max_sessions: int) -> None:
        self.ttl_s = ttl_s
        self._max = max_sessions
        self._table: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._table)

    def owner(self, session_id: str | None, now: float) -> int | None:
        """The session's engine, or None if unknown, expired (dropped then) or ``session_id`` is None."""
        if session_id is None:
            return None
        entry = self._table.get(session_id)
        if entry is None:
            return None
        engine_id, last_seen = entry
        if now - last_seen > self.ttl_s:
            del self._table[session_id]
            return None
        return engine_id

    def record(self, session_id: str | None, engine_id: int, now: float) -> None:
        """The session's request went to ``engine_id`` at ``now``."""
        if session_id is None:
            return
        self._table[session_id] = (engine_id, now)
        self._table.move_to_end(session_id)
        while len(self._table) > self._max:
            self._table.popitem(last=False)
