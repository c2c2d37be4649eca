"""sglang-router's ``cache_aware`` policy, as its source (sgl-router ``policies/cache_aware.rs``,
``policies/tree.rs``, CLI defaults in ``main.rs``) defines it.

Per request, with ``load_e`` = requests the router has in flight to engine e (all engines):
1. imbalanced if ``max - min > balance_abs_threshold`` and ``max > balance_rel_threshold * min``:
   send to the healthy engine with the least load (first on ties) and add the text to its tree;
2. otherwise match the text on the character tree: if matched chars / text chars >
   ``cache_threshold`` send to the matched engine, else to the engine whose tree holds the fewest
   characters; add the text to the chosen engine's tree; if that engine is unhealthy, send to the
   first healthy engine instead.
Every ``eviction_interval_s`` (host clock) each engine's tree is LRU-evicted down to
``max_tree_chars``. CLI defaults: 0.3 / 64 / 1.5 / 120 s / 2^26 chars.

Hosts without prompt text (the simulator replaying hashed traces) get a surrogate text: 16 hex
characters per prefix block hash, so the match rate is the matched fraction of the prompt's blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine_dispatch.char_radix_tree import CharRadixTree
from engine_dispatch.dispatcher import Dispatcher
from engine_dispatch.healthy import healthy_engines
from engine_dispatch.types import DispatchRequest, EngineLoad


def request_text(request: DispatchRequest) -> str:
    """The text cache_aware matches: the prompt text, or the block-hash surrogate."""
    if request.text is not None:
        return request.text
    return "".join(f"{block & 0xFFFF_FFFF_FFFF_FFFF:016x}" for block in request.block_hashes)


class CacheAwareDispatcher(Dispatcher):
    """sglang-router cache_aware (see module docstring)."""

    def __init__(self, num_engines: int, cache_threshold: float = 0.3,
                 balance_abs_threshold: int = 64, balance_rel_threshold: float = 1.5,
                 eviction_interval_s: float = 120.0, max_tree_chars: int = 2 ** 26) -> None:
        if not 0 <= cache_threshold <= 1:
            raise ValueError(f"cache_threshold: expected a number in [0, 1], got {cache_threshold}")
        self.cache_threshold = cache_threshold
        self.balance_abs_threshold = balance_abs_threshold
        self.balance_rel_threshold = balance_rel_threshold
        self.eviction_interval_s = eviction_interval_s
        self.max_tree_chars = max_tree_chars
        self.tree = CharRadixTree()
        for engine_id in range(num_engines):
            self.tree.insert("", engine_id, 0.0)
        self._in_flight = [0] * num_engines
        self._in_flight_ids: dict[str, int] = {}
        self._last_eviction_s: float | None = None

    def pick(self, request: DispatchRequest, engines: Sequence[EngineLoad], now: float) -> int:
        self._maybe_evict(now)
        alive = healthy_engines(engines)
        loads = [self._in_flight[engine.engine_id] for engine in engines]
        highest, lowest = max(loads), min(loads)
        text = request_text(request)
        if (highest - lowest > self.balance_abs_threshold
                and highest > lowest * self.balance_rel_threshold):
            choice = min(alive, key=lambda engine: self._in_flight[engine.engine_id]).engine_id
            self.tree.insert(text, choice, now)
            return choice
        matched, tenant = self.tree.prefix_match(text, now)
        rate = matched / len(text) if text else 0.0
        selected = tenant if rate > self.cache_threshold else self.tree.smallest_tenant()
        if selected is not None and any(engine.engine_id == selected for engine in alive):
            self.tree.insert(text, selected, now)
            return selected
        return alive[0].engine_id

    def _maybe_evict(self, now: float) -> None:
        if self._last_eviction_s is None:
            self._last_eviction_s = now
        elif now - self._last_eviction_s >= self.eviction_interval_s:
            self.tree.evict(self.max_tree_chars)
            self._last_eviction_s = now

    def on_dispatched(self, request: DispatchRequest, engine_id: int, now: float) -> None:
        if request.request_id in self._in_flight_ids:
            self._release(request.request_id)
        self._in_flight_ids[request.request_id] = engine_id
        self._in_flight[engine_id] += 1

    def on_finished(self, request: DispatchRequest, engine_id: int, now: float,
                    output_tokens: int) -> None:
        self._release(request.request_id)

    def on_engine_reset(self, engine_id: int) -> None:
        self.tree.remove_tenant(engine_id)
        self.tree.insert("", engine_id, 0.0)

    def _release(self, request_id: str) -> None:
        engine_id = self._in_flight_ids.pop(request_id, None)
        if engine_id is not None:
            self._in_flight[engine_id] -= 1
