"""Build a dispatcher by name: the one place hosts (simulator, router, SGLang plugin) construct policies.

Names:
    ``round-robin``      engines in turn.
    ``least-requests``   fewest running + waiting (+ own in-flight when reports are stale).
    ``power-of-two``     two random engines, the less loaded one (option ``seed``).
    ``cache-aware``      sglang-router's cache_aware rule (options ``balance_abs_threshold``,
                         ``balance_rel_threshold``, ``cache_threshold``, ``max_tree_chars``).
    ``scored``           moesched's filter -> scorer -> picker dispatcher (option ``config``: a
                         :class:`~engine_dispatch.config.ScoredConfig`, or ``config_path``: a TOML
                         file; ``step_model``: a :class:`~perf_model.batch.StepTimeModel` for the
                         predicted-load scorer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine_dispatch.dispatcher import Dispatcher
from engine_dispatch.policies.round_robin import RoundRobinDispatcher


def _round_robin(num_engines: int) -> Dispatcher:
    return RoundRobinDispatcher(num_engines)


#: name -> builder(num_engines, **options)
_BUILDERS: dict[str, Callable[..., Dispatcher]] = {
    "round-robin": _round_robin,
}


def dispatcher_names() -> list[str]:
    """Names :func:`create_dispatcher` accepts."""
    return sorted(_BUILDERS)


def create_dispatcher(name: str, num_engines: int, **options: Any) -> Dispatcher:
    """Return a new dispatcher ``name`` for engines ``0..num_engines-1``.

    Raises ValueError for an unknown name, a non-positive engine count or an unknown option.
    """
    if num_engines < 1:
        raise ValueError(f"num_engines: expected >= 1, got {num_engines}")
    builder = _BUILDERS.get(name)
    if builder is None:
        raise ValueError(f"dispatcher {name!r}: expected one of {', '.join(dispatcher_names())}")
    try:
        return builder(num_engines, **options)
    except TypeError as exc:  # an option the builder does not take
        raise ValueError(f"dispatcher {name!r}: bad options {sorted(options)}: {exc}") from exc
