"""Round robin: engines in turn, skipping unhealthy ones."""

from __future__ import annotations

from collections.abc import Sequence

from engine_dispatch.dispatcher import Dispatcher
from engine_dispatch.healthy import healthy_engines
from engine_dispatch.types import DispatchRequest, EngineLoad


class RoundRobinDispatcher(Dispatcher):
    """Sends request k to the k-th healthy engine after the previous pick (cyclic by engine_id)."""

    def __init__(self, num_engines: int) -> None:
        self._num_engines = num_engines
        self._next = 0

    def pick(self, request: DispatchRequest, engines: Sequence[EngineLoad], now: float) -> int:
        alive = {engine.engine_id for engine in healthy_engines(engines)}
        for step in range(self._num_engines):
            candidate = (self._next + step) % self._num_engines
            if candidate in alive:
                self._next = candidate + 1
                return candidate
        raise RuntimeError("no healthy engine among engine ids 0..num_engines-1")
