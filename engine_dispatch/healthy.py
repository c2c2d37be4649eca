"""The one filter every policy applies first: drop engines the host saw fail."""

from __future__ import annotations

from collections.abc import Sequence

from engine_dispatch.types import EngineLoad


def healthy_engines(engines: Sequence[EngineLoad]) -> list[EngineLoad]:
    """Engines with ``healthy`` set, in input order. Raises RuntimeError if there are none."""
    alive = [engine for engine in engines if engine.healthy]
    if not alive:
        raise RuntimeError("no healthy engine to dispatch to")
    return alive
