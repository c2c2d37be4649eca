"""Prefix index (block hashes) and character radix tree against brute-force references."""

from hypothesis import given, settings
from hypothesis import strategies as st

from engine_dispatch.char_radix_tree import CharRadixTree
from engine_dispatch.prefix_index import PrefixIndex

chains = st.lists(st.integers(0, 6), min_size=0, max_size=6).map(
    lambda steps: tuple(hash(tuple(steps[: i + 1])) for i in range(len(steps))))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), chains), max_size=25), chains,
       st.integers(1, 12))
def test_prefix_index_matches_lru_reference(inserts, query, capacity):
    index = PrefixIndex(3, capacity)
    reference = [dict() for _ in range(3)]  # engine -> ordered set (oldest first)
    for engine, chain in inserts:
        index.insert(engine, chain)
        lru = reference[engine]
        for block in reversed(chain):
            lru.pop(block, None)
            lru[block] = None
        while len(lru) > capacity:
            lru.pop(next(iter(lru)))
    expected = []
    for engine in range(3):
        depth = 0
        while depth < len(query) and query[depth] in reference[engine]:
            depth += 1
        expected.append(depth)
    assert index.matched_blocks(query) == expected
    assert all(index.blocks_on(e) == len(reference[e]) <= capacity for e in range(3))
    assert len(index) == len(set().union(*reference))


def test_prefix_index_evicts_leaves_before_shared_prefix():
    index = PrefixIndex(1, capacity_blocks=3)
    index.insert(0, (1, 2, 3))
    index.insert(0, (1, 9))  # the shared block 1 is refreshed, block 3 (a leaf) goes
    assert index.matched_blocks((1, 2, 3)) == [2]
    index.remove(0, [2])
    assert index.matched_blocks((1, 2)) == [1]
    index.clear(0)
    assert index.matched_blocks((1,)) == [0] and len(index) == 0


texts = st.text(alphabet="ab c", max_size=8)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(texts, st.integers(0, 2)), max_size=15), texts)
def test_char_tree_match_and_sizes(inserts, query):
    tree = CharRadixTree()
    for step, (text, tenant) in enumerate(inserts):
        tree.insert(text, tenant, float(step))
    # matched length = longest common prefix with any inserted text
    best = max((len(_common(text, query)) for text, _ in inserts), default=0)
    matched, tenant = tree.prefix_match(query, 99.0)
    assert matched == best
    if inserts and best:
        assert any(t == tenant and len(_common(text, query)) >= best for text, t in inserts)
    # per-tenant size = characters of the union of that tenant's texts as a trie of prefixes
    for owner in {t for _, t in inserts}:
        prefixes = {text[:i] for text, t in inserts if t == owner for i in range(1, len(text) + 1)}
        assert tree.tenant_chars[owner] == len(prefixes)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(texts, st.integers(0, 2)), max_size=15), st.integers(0, 6))
def test_char_tree_eviction_bounds_every_tenant(inserts, limit):
    tree = CharRadixTree()
    for step, (text, tenant) in enumerate(inserts):
        tree.insert(text, tenant, float(step))
    tree.evict(limit)
    assert all(size <= limit for size in tree.tenant_chars.values())
    for tenant in list(tree.tenant_chars):
        tree.remove_tenant(tenant)
    assert tree.prefix_match("ab", 0.0) == (0, None)


def test_char_tree_eviction_drops_least_recent_leaf():
    tree = CharRadixTree()
    tree.insert("hello", 0, 1.0)
    tree.insert("world", 0, 2.0)
    tree.evict(5)
    assert tree.prefix_match("hello", 3.0)[0] == 0
    assert tree.prefix_match("world", 3.0) == (5, 0)


def _common(a: str, b: str) -> str:
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    return a[:i]
