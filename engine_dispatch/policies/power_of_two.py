"""Power of two choices: two distinct random healthy engines, the one with fewer outstanding
requests (the first drawn on ties), as sgl-router's ``power_of_two`` policy."""

from __future__ import annotations

import random
from collections.abc import Sequence

from engine_dispatch.dispatcher import Dispatcher
from engine_dispatch.healthy import healthy_engines
from engine_dispatch.load_tracker import LoadTracker
from engine_dispatch.types import DispatchRequest, EngineLoad


class PowerOfTwoDispatcher(Dispatcher):
    """Load = running + waiting of the latest report plus own dispatches since (own books when the
    report is older than ``stale_after_s``)."""

    def __init__(self, num_engines: int, seed: int = 0, stale_after_s: float = 2.0) -> None:
        self._rng = random.Random(seed)
        self.tracker = LoadTracker(num_engines, stale_after_s)

    def pick(self, request: DispatchRequest, engines: Sequence[EngineLoad], now: float) -> int:
        alive = healthy_engines(engines)
        if len(alive) == 1:
            return alive[0].engine_id
        drawn = self.tracker.estimate_all(self._rng.sample(alive, 2), now)
        first, second = drawn.outstanding
        return drawn.engine_id[0] if first <= second else drawn.engine_id[1]

    def on_dispatched(self, request: DispatchRequest, engine_id: int, now: float) -> None:
        self.tracker.dispatched(request.request_id, engine_id, now, request.prompt_tokens,
                                request.prompt_tokens)

    def on_first_token(self, request: DispatchRequest, engine_id: int, now: float) -> None:
        self.tracker.first_token(request.request_id)

    def on_finished(self, request: DispatchRequest, engine_id: int, now: float,
                    output_tokens: int) -> None:
        self.tracker.finished(request.request_id)
