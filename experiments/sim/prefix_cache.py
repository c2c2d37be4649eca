"""An engine's prefix cache: a radix trie over prompt block ids with reference pins and LRU eviction.

Prompts are described by their leading block ids (``TraceRequest.prefix_blocks``, 512-token blocks,
as Mooncake's ``hash_ids``). A node of the trie is one cached block whose whole path from the root is
cached too, so a lookup walks the request's ids from the root until the first miss. Running
requests pin the path they use (a reference count on every node of the path); only unpinned leaves
can be evicted, least recently used first (SGLang's radix cache works the same way). The cache
counts blocks; the engine turns them into KV tokens.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence


class CacheNode:
    """One cached block. ``refs`` counts running requests whose pinned path passes through it."""

    __slots__ = ("block", "parent", "children", "refs", "last_used")

    def __init__(self, block: int, parent: CacheNode | None) -> None:
        self.block = block
        self.parent = parent
        self.children: dict[int, CacheNode] = {}
        self.refs = 0
        self.last_used = 0.0


class PrefixCache:
    """Radix trie of cached blocks with pins and LRU eviction of unpinned leaves.

    Attributes:
        blocks: cached blocks (nodes, the root excluded).
        evictable_blocks: cached blocks no running request pins.
        version: increases whenever blocks are added or evicted (lets hosts skip re-matching).
    """

    def __init__(self) -> None:
        self.root = CacheNode(-1, None)
        self.root.refs = 1  # never evicted, never counted
        self.blocks = 0
        self.evictable_blocks = 0
        self.version = 0
        self._lru: list[tuple[float, int, CacheNode]] = []
        self._seq = itertools.count()

    def match(self, block_ids: Sequence[int], limit: int) -> int:
        """Number of leading ``block_ids`` (at most ``limit``) cached now; changes nothing."""
        node = self.root
        matched = 0
        for block in block_ids:
            if matched >= limit:
                break
            node = node.children.get(block)  # type: ignore[assignment]
            if node is None:
                break
            matched += 1
        return matched

    def acquire(self, block_ids: Sequence[int], count: int, now: float) -> tuple[CacheNode, int]:
        """Pin the path of the first ``count`` ids, inserting missing blocks; returns (deepest node, inserted).

        Inserted blocks become cache blocks (the caller converts the request's own KV tokens for
        them into cache tokens).
        """
        node = self.root
        inserted = 0
        for block in block_ids[:count]:
            child = node.children.get(block)
            if child is None:
                child = CacheNode(block, node)
                node.children[block] = child
                self.blocks += 1
                self.evictable_blocks += 1  # refs is 0 until pinned below
                inserted += 1
            node = child
        if inserted:
            self.version += 1
        self._pin(node, now)
        return node, inserted

    def _pin(self, node: CacheNode, now: float) -> None:
        while node is not self.root:
            if node.refs == 0:
                self.evictable_blocks -= 1
            node.refs += 1
            node.last_used = now
            node = node.parent  # type: ignore[assignment]

    def release(self, node: CacheNode, now: float) -> None:
        """Unpin the path ending at ``node`` (from :meth:`acquire`); freed leaves become evictable."""
        leaf = node
        while node is not self.root:
            node.refs -= 1
            node.last_used = now
            if node.refs == 0:
                self.evictable_blocks += 1
            node = node.parent  # type: ignore[assignment]
        if leaf is not self.root and leaf.refs == 0 and not leaf.children:
            heapq.heappush(self._lru, (now, next(self._seq), leaf))

    def evict(self, count: int) -> int:
        """Evict up to ``count`` unpinned blocks, least recently used leaves first; returns how many."""
        evicted = 0
        while evicted < count and self._lru:
            stamp, _, node = heapq.heappop(self._lru)
            if node.refs or node.children or node.parent is None or stamp != node.last_used:
                continue  # pinned again, grew children, already evicted, or touched since
            parent = node.parent
            del parent.children[node.block]
            node.parent = None
            self.blocks -= 1
            self.evictable_blocks -= 1
            evicted += 1
            if parent is not self.root and parent.refs == 0 and not parent.children:
                heapq.heappush(self._lru, (parent.last_used, next(self._seq), parent))
        if evicted:
            self.version += 1
        return evicted
