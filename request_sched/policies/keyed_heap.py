"""A min-heap of waiting requests under a static sort key, with O(1) lazy removal.

Policies whose admission order does not change while requests wait (FCFS, SJF with linear aging)
store each request once under a key computed at :meth:`KeyedHeap.push` time. ``push`` and ``pop``
are O(log n); :meth:`KeyedHeap.remove` only forgets the entry, and ``pop``/``peek`` skip entries
that are no longer live, so removal is O(1). The heap compacts itself when more than half its
entries are dead, which bounds memory at about 2x the live count.

Entries are plain tuples ``(key, seq, request)`` so heap operations and sorts compare them in C;
``seq`` is unique, so the comparison never reaches ``request``.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator

from request_sched.types import WaitingRequest

SortKey = tuple[float, ...]
_Entry = tuple[SortKey, int, WaitingRequest]


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
        entry = (key, next(self._seq), request)
        self._live[request.request_id] = entry
        heapq.heappush(self._heap, entry)

    def _top(self) -> _Entry:
        heap, live = self._heap, self._live
        while heap:
            entry = heap[0]
            if live.get(entry[2].request_id) is entry:
                return entry
            heapq.heappop(heap)
        raise IndexError("the queue is empty")

    def peek(self) -> WaitingRequest:
        """The request with the smallest key. Raises IndexError when empty."""
        return self._top()[2]

    def peek_key(self) -> SortKey:
        """The smallest key. Raises IndexError when empty."""
        return self._top()[0]

    def pop(self) -> WaitingRequest:
        """Remove and return the request with the smallest key. Raises IndexError when empty."""
        self._top()
        entry = heapq.heappop(self._heap)
        del self._live[entry[2].request_id]
        return entry[2]

    def remove(self, request_id: str) -> WaitingRequest:
        """Remove the live request with ``request_id`` and return it. Raises KeyError if absent."""
        entry = self._live.pop(request_id)
        if len(self._heap) > 2 * len(self._live) + 16:
            self._heap = list(self._live.values())
            heapq.heapify(self._heap)
        return entry[2]

    def key_of(self, request_id: str) -> SortKey:
        """The key a live request was pushed with. Raises KeyError if absent."""
        return self._live[request_id][0]

    def ordered(self) -> list[WaitingRequest]:
        """Live requests, smallest key first (O(n log n); the heap is unchanged)."""
        return [entry[2] for entry in sorted(self._live.values())]

    def requests(self) -> Iterator[WaitingRequest]:
        """Live requests in no particular order."""
        for entry in self._live.values():
            yield entry[2]
