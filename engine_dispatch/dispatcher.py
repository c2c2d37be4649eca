"""The interface every dispatch policy implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from engine_dispatch.types import DispatchRequest, EngineLoad


class Dispatcher(ABC):
    """Chooses an engine for each request.

    Hosts call :meth:`pick` once per request with the engines' latest loads (all engines, healthy
    or not, indexed by ``engine_id``), then :meth:`on_dispatched` once the request was really sent,
    and :meth:`on_finished` when it completed or failed. Dispatchers keep their own view of what
    they sent (prefix index, sessions) in between load reports.
    """

    @abstractmethod
    def pick(self, request: DispatchRequest, engines: Sequence[EngineLoad], now: float) -> int:
        """Return the ``engine_id`` to send ``request`` to. Raises RuntimeError if none is healthy."""

    def on_dispatched(self, request: DispatchRequest, engine_id: int, now: float) -> None:
        """The request was sent to ``engine_id``."""

    def on_first_token(self, request: DispatchRequest, engine_id: int, now: float) -> None:
        """The first output token (or byte) of ``request`` came back: its prefill is done.

        Optional for hosts (engine_dispatch extension); without it, dispatchers that track
        pending prefill count it pending until the next fresh load report.
        """

    def on_finished(self, request: DispatchRequest, engine_id: int, now: float,
                    output_tokens: int) -> None:
        """The request left ``engine_id`` (finished or failed)."""

    def on_engine_reset(self, engine_id: int) -> None:
        """``engine_id`` restarted or was replaced: forget what it was believed to cache.

        Optional for hosts (engine_dispatch extension).
        """
