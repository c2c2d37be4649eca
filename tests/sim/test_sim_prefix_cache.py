"""The radix prefix cache: block counts, pins and LRU eviction stay consistent."""

from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.sim.prefix_cache import PrefixCache


def _nodes(cache):
    stack, out = list(cache.root.children.values()), []
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node.children.values())
    return out


paths = st.lists(st.integers(0, 3), min_size=1, max_size=5)
ops = st.lists(st.tuples(st.sampled_from(["acquire", "release", "evict"]), paths, st.integers(1, 5)),
               max_size=60)


@settings(max_examples=200, deadline=None)
@given(ops=ops)
def test_counts_pins_and_eviction_stay_consistent(ops):
    cache = PrefixCache()
    held = []  # (node, path) pinned by a simulated request
    now = 0.0
    for op, path, n in ops:
        now += 1.0
        if op == "acquire":
            node, _ = cache.acquire(path, len(path), now)
            held.append((node, path))
            assert cache.match(path, len(path)) == len(path)
        elif op == "release" and held:
            node, _ = held.pop(n % len(held))
            cache.release(node, now)
        elif op == "evict":
            before = cache.blocks
            evicted = cache.evict(n)
            assert cache.blocks == before - evicted
        nodes = _nodes(cache)
        assert cache.blocks == len(nodes)
        assert cache.evictable_blocks == sum(1 for x in nodes if x.refs == 0)
        for node, path in held:  # pinned paths are never evicted
            assert cache.match(path, len(path)) == len(path)
    for node, _ in held:
        cache.release(node, now)
    remaining = len(_nodes(cache))
    assert cache.evictable_blocks == remaining
    assert cache.evict(10**6) == remaining
    assert cache.blocks == 0 and cache.evictable_blocks == 0


def test_lru_evicts_least_recently_used_leaf_first():
    cache = PrefixCache()
    for t, path in enumerate([(1, 2), (1, 3), (4,)]):
        node, _ = cache.acquire(path, len(path), float(t))
        cache.release(node, float(t))
    assert cache.evict(1) == 1
    assert cache.match((1, 2), 2) == 1 and cache.match((1, 3), 2) == 2
    assert cache.evict(2) == 2  # (1, 3)'s leaf, then block 1 (a leaf now, last used before (4,))
    assert cache.match((1,), 1) == 0 and cache.match((4,), 1) == 1
