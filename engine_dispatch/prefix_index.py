"""Approximate per-engine prefix caches, indexed together so one lookup serves every engine.

Each engine holds a bounded LRU set of block hashes (what the dispatcher believes the engine has
cached). Block hashes are *chained* (block i's hash covers tokens 0..(i+1)*B-1), so an engine that
holds block i of a request holds its whole prefix up to i, and the cached prefix of a request on an
engine is the run of leading blocks the engine holds.

Layout: one dict ``hash -> bitmask of engines holding it`` (so matching a request against all
engines walks its blocks once: cost O(blocks), independent of the engine count and of how many
prefixes are indexed) plus, per engine, an insertion-ordered dict used as the LRU list. Memory is
bounded by ``capacity_blocks`` per engine.

Recency: a request's blocks are touched from the last one to the first, so the leading (most
shared) blocks are the most recent and are evicted last, as a radix cache evicts leaves first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class PrefixIndex:
    """Which engines (approximately) hold which prefix blocks.

    Args:
        num_engines: engines ``0..num_engines-1``.
        capacity_blocks: most blocks remembered per engine (LRU beyond that), >= 1; hosts
            lower it per engine to what the engine's KV pool can hold (:meth:`set_capacity`).
    """

    def __init__(self, num_engines: int, capacity_blocks: int) -> None:
        if capacity_blocks < 1:
            raise ValueError(f"capacity_blocks: expected >= 1, got {capacity_blocks}")
        self._num_engines = num_engines
        self._capacity = [capacity_blocks] * num_engines
        self._holders: dict[int, int] = {}  # block hash -> bitmask of engine ids
        self._lru: list[dict[int, None]] = [{} for _ in range(num_engines)]  # oldest first

    def __len__(self) -> int:
        """Distinct block hashes held by at least one engine."""
        return len(self._holders)

    def set_capacity(self, engine_id: int, capacity_blocks: int) -> None:
        """Bound ``engine_id``'s set to ``capacity_blocks`` (>= 1), evicting LRU blocks now."""
        capacity_blocks = max(1, capacity_blocks)
        if capacity_blocks != self._capacity[engine_id]:
            self._capacity[engine_id] = capacity_blocks
            self._trim(engine_id)

    def blocks_on(self, engine_id: int) -> int:
        """Number of blocks remembered for ``engine_id``."""
        return len(self._lru[engine_id])

    def insert(self, engine_id: int, block_hashes: Sequence[int]) -> None:
        """Record that ``engine_id`` now caches these blocks (a request's chain, in prompt order)."""
        lru = self._lru[engine_id]
        bit = 1 << engine_id
        holders = self._holders
        for block in reversed(block_hashes):  # leading blocks end up most recent
            if block in lru:
                del lru[block]
            else:
                holders[block] = holders.get(block, 0) | bit
            lru[block] = None
        self._trim(engine_id)

    def _trim(self, engine_id: int) -> None:
        lru = self._lru[engine_id]
        while len(lru) > self._capacity[engine_id]:
            self._drop(engine_id, next(iter(lru)))

    def remove(self, engine_id: int, block_hashes: Iterable[int]) -> None:
        """Forget blocks the engine reported evicted (unknown hashes are ignored)."""
        lru = self._lru[engine_id]
        for block in block_hashes:
            if block in lru:
                self._drop(engine_id, block)

    def clear(self, engine_id: int) -> None:
        """Forget everything about ``engine_id`` (engine restarted or removed)."""
        for block in list(self._lru[engine_id]):
            self._drop(engine_id, block)

    def matched_blocks(self, block_hashes: Sequence[int]) -> list[int]:
        """Leading blocks of ``block_hashes`` each engine holds: list of length ``num_engines``."""
        matched = [0] * self._num_engines
        alive = (1 << self._num_engines) - 1
        holders = self._holders
        depth = 0
        for depth, block in enumerate(block_hashes):
            still = alive & holders.get(block, 0)
            if still != alive:
                self._assign(matched, alive & ~still, depth)
                alive = still
                if not alive:
                    return matched
        else:
            depth = len(block_hashes)
        self._assign(matched, alive, depth)
        return matched

    @staticmethod
    def _assign(matched: list[int], mask: int, depth: int) -> None:
        """Set ``matched[e] = depth`` for each engine ``e`` in ``mask`` (0 is the default)."""
        if not depth:
            return
        while mask:
            low = mask & -mask
            matched[low.bit_length() - 1] = depth
            mask ^= low

    def _drop(self, engine_id: int, block: int) -> None:
        del self._lru[engine_id][block]
        remaining = self._holders[block] & ~(1 << engine_id)
        if remaining:
            self._holders[block] = remaining
        else:
            del self._holders[block]
