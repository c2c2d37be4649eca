"""Build a dispatcher by name: the one place hosts (simulator, router, SGLang plugin) construct policies.

Names and options:
    ``round-robin``      engines in turn.
    ``least-requests``   fewest outstanding (running + waiting) requests: the scored dispatcher
                         with only the ``least_load`` scorer. Options: ``stale_after_s``.
    ``power-of-two``     two random engines, the less loaded. Options: ``seed``, ``stale_after_s``.
    ``cache-aware``      sglang-router's cache_aware. Options: ``cache_threshold`` (0.3),
                         ``balance_abs_threshold`` (64), ``balance_rel_threshold`` (1.5),
                         ``eviction_interval_s`` (120), ``max_tree_chars`` (2**26).
    ``scored``           moesched's filter -> scorer -> picker dispatcher. Options: ``config``
                         (a :class:`~engine_dispatch.config.ScoredConfig`) or ``config_path`` (a
                         TOML file; default: built-in defaults), ``step_model`` (a
                         :class:`~perf_model.batch.StepTimeModel`, needed when predicted_load has
                         weight), ``block_tokens`` (overrides ``dispatch.block_tokens``: tokens
                         per block of the hosts' ``block_hashes``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine_dispatch.config import DispatchParams, ScoredConfig, load_config
from engine_dispatch.dispatcher import Dispatcher
from engine_dispatch.policies.cache_aware import CacheAwareDispatcher
from engine_dispatch.policies.power_of_two import PowerOfTwoDispatcher
from engine_dispatch.policies.round_robin import RoundRobinDispatcher
from engine_dispatch.policies.scored import ScoredDispatcher
from perf_model.batch import StepTimeModel


def _round_robin(num_engines: int) -> Dispatcher:
    return RoundRobinDispatcher(num_engines)


def _least_requests(num_engines: int, stale_after_s: float = 2.0) -> Dispatcher:
    config = ScoredConfig(
        dispatch=DispatchParams(stale_after_s=stale_after_s, filter_kv_saturated=False),
        weights={"least_load": 1.0})
    return ScoredDispatcher(num_engines, config)


def _scored(num_engines: int, config: ScoredConfig | None = None,
            config_path: str | Path | None = None, step_model: StepTimeModel | None = None,
            block_tokens: int | None = None) -> Dispatcher:
    if config is not None and config_path is not None:
        raise ValueError("give config or config_path, not both")
    if config is None:
        config = load_config(config_path) if config_path is not None else ScoredConfig()
    if block_tokens is not None:
        config = dataclasses.replace(
            config, dispatch=dataclasses.replace(config.dispatch, block_tokens=block_tokens))
    return ScoredDispatcher(num_engines, config, step_model)


#: name -> builder(num_engines, **options)
_BUILDERS: dict[str, Callable[..., Dispatcher]] = {
    "round-robin": _round_robin,
    "least-requests": _least_requests,
    "power-of-two": PowerOfTwoDispatcher,
    "cache-aware": CacheAwareDispatcher,
    "scored": _scored,
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
