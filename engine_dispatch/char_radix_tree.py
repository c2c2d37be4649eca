"""A multi-tenant character radix tree with per-tenant LRU eviction (sglang-router's approximate tree).

Behaviour follows sgl-router's ``policies/tree.rs`` (read for the rules, not copied): one tree
holds the request texts sent to every worker ("tenant"); each node records, per tenant, when the
tenant last used it; a tenant's size is the number of characters on its nodes. ``prefix_match``
walks the whole tree (a partially matched last node counts as reached) and answers the matched
length and a tenant holding the deepest node reached (the source takes any one; here the lowest
tenant id, for determinism). Eviction pops each over-size tenant's least recently used leaves
until it is within the limit.
"""

from __future__ import annotations

import heapq
from itertools import count


class _Node:
    __slots__ = ("children", "text", "tenants", "parent")

    def __init__(self, text: str, parent: _Node | None, tenants: dict[int, float]) -> None:
        self.children: dict[str, _Node] = {}
        self.text = text
        self.tenants = tenants  # tenant -> last access (host seconds)
        self.parent = parent


def _shared_prefix(a: str, b: str) -> int:
    """Length of the common prefix of ``a`` and ``b`` (C-speed slice compares, binary search)."""
    limit = min(len(a), len(b))
    if a[:limit] == b[:limit]:
        return limit
    low, high = 0, limit  # a[:low] == b[:low]; a[:high] != b[:high]
    while high - low > 1:
        mid = (low + high) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid
    return low


class CharRadixTree:
    """Texts per tenant (integer ids), matched by longest character prefix."""

    def __init__(self) -> None:
        self._root = _Node("", None, {})
        self.tenant_chars: dict[int, int] = {}

    def insert(self, text: str, tenant: int, now: float) -> None:
        """Record that ``tenant`` was sent ``text`` at ``now``."""
        node = self._root
        node.tenants[tenant] = now
        self.tenant_chars.setdefault(tenant, 0)
        index = 0
        while index < len(text):
            child = node.children.get(text[index])
            if child is None:
                leaf = _Node(text[index:], node, {tenant: now})
                node.children[text[index]] = leaf
                self.tenant_chars[tenant] += len(leaf.text)
                return
            shared = _shared_prefix(child.text, text[index:])
            if shared < len(child.text):  # split child into child.text[:shared] -> rest
                middle = _Node(child.text[:shared], node, dict(child.tenants))
                child.text = child.text[shared:]
                child.parent = middle
                middle.children[child.text[0]] = child
                node.children[text[index]] = middle
                child = middle
            if tenant not in child.tenants:
                self.tenant_chars[tenant] += len(child.text)
            child.tenants[tenant] = now
            node = child
            index += shared

    def prefix_match(self, text: str, now: float) -> tuple[int, int | None]:
        """(matched characters, a tenant holding the match or None); refreshes that tenant's path."""
        node, index = self._root, 0
        while index < len(text):
            child = node.children.get(text[index])
            if child is None:
                break
            shared = _shared_prefix(child.text, text[index:])
            index += shared
            node = child
            if shared < len(child.text):
                break
        if not node.tenants:
            return index, None
        tenant = min(node.tenants)
        walker: _Node | None = node
        while walker is not None:
            walker.tenants[tenant] = now
            walker = walker.parent
        return index, tenant

    def smallest_tenant(self) -> int | None:
        """Tenant with the fewest characters (lowest id on ties), or None if there is none."""
        if not self.tenant_chars:
            return None
        return min(self.tenant_chars, key=lambda tenant: (self.tenant_chars[tenant], tenant))

    @staticmethod
    def _is_leaf_for(node: _Node, tenant: int) -> bool:
        return tenant in node.tenants and not any(
            tenant in child.tenants for child in node.children.values())

    def _detach(self, node: _Node, tenant: int) -> None:
        """Take ``tenant`` off ``node``; unlink the node when nobody uses it any more."""
        del node.tenants[tenant]
        self.tenant_chars[tenant] -= len(node.text)
        if not node.children and not node.tenants and node.parent is not None:
            del node.parent.children[node.text[0]]

    def evict(self, max_chars: int) -> None:
        """Drop least recently used leaves of every tenant above ``max_chars`` characters."""
        heap: list[tuple[float, int, int, _Node]] = []
        order = count()
        stack = [self._root]
        while stack:
            node = stack.pop()
            stack.extend(node.children.values())
            for tenant, last in node.tenants.items():
                if self._is_leaf_for(node, tenant):
                    heap.append((last, next(order), tenant, node))
        heapq.heapify(heap)
        while heap:
            _, _, tenant, node = heapq.heappop(heap)
            if self.tenant_chars[tenant] <= max_chars or tenant not in node.tenants:
                continue
            self._detach(node, tenant)
            parent = node.parent
            if parent is not None and self._is_leaf_for(parent, tenant):
                heapq.heappush(heap, (parent.tenants[tenant], next(order), tenant, parent))

    def remove_tenant(self, tenant: int) -> None:
        """Forget everything ``tenant`` was sent (worker removed)."""
        stack = [self._root]
        holders: list[_Node] = []
        while stack:
            node = stack.pop()
            stack.extend(node.children.values())
            if tenant in node.tenants:
                holders.append(node)
        for node in reversed(holders):  # children before parents (DFS pre-order reversed)
            self._detach(node, tenant)
        self.tenant_chars.pop(tenant, None)
