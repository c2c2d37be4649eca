"""A min-heap of waiting requests under a static sort key, with O(1) lazy removal.

Policies whose admission order does not change while requests wait (FCFS, SJF with linear aging)
store each request once under a key computed at :meth:`KeyedHeap.push` time. ``push`` and ``pop``
are O(log n); :meth:`KeyedHeap.remove` marks the entry dead and ``pop``/``peek`` skip dead
entries, so removal is O(1) amortised. The heap compacts itself when more than half its entries are
dead, which bounds memory at 2x the live count.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator

from request_sched.types import WaitingRequest

SortKey = tuple[float, ...]


class _Entry:
    """One heap slot: ``(key, seq)`` orders it, ``request`` is None once removed."""

    __slots__ = ("key", "seq", "request")

    def __init__(self, key: SortKey, seq: int, request: WaitingRequest) -> None:
        self.key = key
        self.seq = seq
        self.request: WaitingRequest | None = request

    def __lt__(self, other: _Entry) -> bool:
        return (self.key, self.seq) < (other.key, other.seq)


class KeyedHeap:
    """Waiting requests ordered by ``(key, insertion sequence)``; the smallest key comes out first.

    Ties on the key go to the request pushed first. Request ids must be unique among live entries.
    """

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._live: dict[str, _Entry] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, request_id: str) -> bool:
        return request_id in self._live

    def push(self, key: SortKey, request: WaitingRequest) -> None:
        """Insert ``request`` under ``key``. Raises ValueError if its id is already waiting."""
        if request.request_id in self._live:
            raise ValueError(f"request {request.request_id!r} is already waiting")
        entry = _Entry(key, next(self._seq), request)
        self._live[request.request_id] = entry
        heapq.heappush(self._heap, entry)

    def _drop_dead_top(self) -> None:
        heap = self._heap
        while heap and heap[0].request is None:
            heapq.heappop(heap)

    def peek(self) -> WaitingRequest:
        """The request with the smallest key. Raises IndexError when empty."""
        self._drop_dead_top()
        if not self._heap:
            raise IndexError("peek from an empty queue")
        request = self._heap[0].request
        assert request is not None
        return request

    def pop(self) -> WaitingRequest:
        """Remove and return the request with the smallest key. Raises IndexError when empty."""
        self._drop_dead_top()
        if not self._heap:
            raise IndexError("pop from an empty queue")
        entry = heapq.heappop(self._heap)
        request = entry.request
        assert request is not None
        del self._live[request.request_id]
        return request

    def remove(self, request_id: str) -> WaitingRequest:
        """Remove the live request with ``request_id`` and return it. Raises KeyError if absent."""
        entry = self._live.pop(request_id)
        request = entry.request
        assert request is not None
        entry.request = None
        if len(self._heap) > 2 * len(self._live) + 16:
            self._heap = [e for e in self._heap if e.request is not None]
            heapq.heapify(self._heap)
        return request

    def key_of(self, request_id: str) -> SortKey:
        """The key a live request was pushed with. Raises KeyError if absent."""
        return self._live[request_id].key

    def ordered(self) -> list[WaitingRequest]:
        """Live requests, smallest key first (O(n log n); the heap is unchanged)."""
        entries = sorted(self._live.values())
        return [e.request for e in entries]  # type: ignore[misc]

    def requests(self) -> Iterator[WaitingRequest]:
        """Live requests in no particular order."""
        for entry in self._live.values():
            assert entry.request is not None
            yield entry.request
