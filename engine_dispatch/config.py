"""Settings of the scored dispatcher, read from a TOML file (``tomllib``) and validated.

File layout (every table and key optional; defaults below; unknown keys are refused)::

    [dispatch]
    picker = "argmax"            # "argmax" (ties: next engine after the last pick) | "top-k"
    top_k = 2                    # top-k picker: choose uniformly among the k best
    seed = 0                     # top-k picker's random seed
    stale_after_s = 2.0          # engine reports older than this are ignored (own books used)
    block_tokens = 64            # tokens per prefix block (must match how hosts hash prompts)
    index_capacity_blocks = 200000   # prefix blocks remembered per engine (LRU); lowered to
                                     # kv_capacity_tokens / block_tokens when engines report it
    filter_kv_saturated = false  # drop engines at/above kv_use.saturation unless none is left

    [weights]                    # scorer -> weight >= 0 (used when there is no [hybrid])
    prefix_load = 1.0
    kv_use = 0.1
    stickiness = 0.3
    cache_affinity = 0.0         # keep a shared prefix on the engine that holds it (router file: 0.5)
    predicted_load = 0.0         # needs a step-time model from the host
    least_load = 0.3

    [prefix_load]  scale_tokens = 512.0
    [kv_use]       saturation = 0.9
    [stickiness]   ttl_s = 600.0, overload_rel = 1.5, overload_abs = 4, max_kv_fraction = 0.95,
                   max_sessions = 100000
    [cache_affinity]  min_cached_fraction = 0.5, overload_rel = 1.5, overload_abs = 4,
                      max_kv_fraction = 0.95
    [predicted_load]  chunk_tokens = 8192, scale_s = 0.05
    [least_load]   scale_requests = 1.0

    [hybrid]                     # GAPS-style switch between two weight sets
    metric = "kv"                # cluster utilisation: mean KV fraction ("kv") or mean
                                 # outstanding / max_running_requests capped at 1 ("queue")
    threshold = 0.5              # utilisation below -> [hybrid.below] weights, else [hybrid.above]
    max_running_requests = 256
    [hybrid.below]  least_load = 1.0
    [hybrid.above]  predicted_load = 1.0

Errors are ValueError naming the file and the dotted key, e.g.
``configs/x.toml: kv_use.saturation: expected a number in (0, 1], got 1.5``.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: scorer names a weight table may use
SCORER_NAMES = ("prefix_load", "kv_use", "stickiness", "cache_affinity", "predicted_load", "least_load")


def _require(ok: bool, key: str, expected: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"{key}: expected {expected}, got {value!r}")


@dataclass(frozen=True)
class DispatchParams:
    picker: str = "argmax"
    top_k: int = 2
    seed: int = 0
    stale_after_s: float = 2.0
    block_tokens: int = 64
    index_capacity_blocks: int = 200_000
    filter_kv_saturated: bool = False

    def __post_init__(self) -> None:
        _require(self.picker in ("argmax", "top-k"), "dispatch.picker", '"argmax" or "top-k"',
                 self.picker)
        _require(self.top_k >= 1, "dispatch.top_k", "an integer >= 1", self.top_k)
        _require(self.stale_after_s > 0, "dispatch.stale_after_s", "a number > 0",
                 self.stale_after_s)
        _require(self.block_tokens >= 1, "dispatch.block_tokens", "an integer >= 1",
                 self.block_tokens)
        _require(self.index_capacity_blocks >= 1, "dispatch.index_capacity_blocks",
                 "an integer >= 1", self.index_capacity_blocks)


@dataclass(frozen=True)
class PrefixLoadParams:
    scale_tokens: float = 512.0

    def __post_init__(self) -> None:
        _require(self.scale_tokens > 0, "prefix_load.scale_tokens", "a number > 0",
                 self.scale_tokens)


@dataclass(frozen=True)
class KvUseParams:
    saturation: float = 0.9

    def __post_init__(self) -> None:
        _require(0 < self.saturation <= 1, "kv_use.saturation", "a number in (0, 1]",
                 self.saturation)


@dataclass(frozen=True)
class OverloadParams:
    """When a scorer that favours one engine (a session's, a prefix's) stops favouring it:
    outstanding > ``overload_rel`` x mean + ``overload_abs``, or KV fraction >= ``max_kv_fraction``.
    ``section`` names the TOML table in errors."""

    overload_rel: float = 1.5
    overload_abs: float = 4.0
    max_kv_fraction: float = 0.95

    def _check_overload(self, section: str) -> None:
        _require(self.overload_rel >= 1, f"{section}.overload_rel", "a number >= 1",
                 self.overload_rel)
        _require(self.overload_abs >= 0, f"{section}.overload_abs", "a number >= 0",
                 self.overload_abs)
        _require(0 < self.max_kv_fraction <= 1, f"{section}.max_kv_fraction",
                 "a number in (0, 1]", self.max_kv_fraction)


@dataclass(frozen=True)
class StickinessParams(OverloadParams):
    ttl_s: float = 600.0
    max_sessions: int = 100_000

    def __post_init__(self) -> None:
        _require(self.ttl_s > 0, "stickiness.ttl_s", "a number > 0", self.ttl_s)
        self._check_overload("stickiness")
        _require(self.max_sessions >= 1, "stickiness.max_sessions", "an integer >= 1",
                 self.max_sessions)


@dataclass(frozen=True)
class CacheAffinityParams(OverloadParams):
    min_cached_fraction: float = 0.5

    def __post_init__(self) -> None:
        _require(0 < self.min_cached_fraction <= 1, "cache_affinity.min_cached_fraction",
                 "a number in (0, 1]", self.min_cached_fraction)
        self._check_overload("cache_affinity")


@dataclass(frozen=True)
class PredictedLoadParams:
    chunk_tokens: int = 8192
    scale_s: float = 0.05

    def __post_init__(self) -> None:
        _require(self.chunk_tokens >= 1, "predicted_load.chunk_tokens", "an integer >= 1",
                 self.chunk_tokens)
        _require(self.scale_s > 0, "predicted_load.scale_s", "a number > 0", self.scale_s)


@dataclass(frozen=True)
class LeastLoadParams:
    scale_requests: float = 1.0

    def __post_init__(self) -> None:
        _require(self.scale_requests > 0, "least_load.scale_requests", "a number > 0",
                 self.scale_requests)


def _check_weights(weights: dict[str, float], key: str) -> None:
    for name, weight in weights.items():
        _require(name in SCORER_NAMES, f"{key}.{name}", f"a scorer name ({', '.join(SCORER_NAMES)})",
                 name)
        _require(isinstance(weight, (int, float)) and not isinstance(weight, bool) and weight >= 0,
                 f"{key}.{name}", "a number >= 0", weight)
    _require(any(weight > 0 for weight in weights.values()), key, "at least one weight > 0",
             weights)


@dataclass(frozen=True)
class HybridParams:
    metric: str = "kv"
    threshold: float = 0.5
    max_running_requests: int = 256
    below: dict[str, float] = field(default_factory=lambda: {"least_load": 1.0})
    above: dict[str, float] = field(default_factory=lambda: {"predicted_load": 1.0})

    def __post_init__(self) -> None:
        _require(self.metric in ("kv", "queue"), "hybrid.metric", '"kv" or "queue"', self.metric)
        _require(0 <= self.threshold <= 1, "hybrid.threshold", "a number in [0, 1]",
                 self.threshold)
        _require(self.max_running_requests >= 1, "hybrid.max_running_requests",
                 "an integer >= 1", self.max_running_requests)
        _check_weights(self.below, "hybrid.below")
        _check_weights(self.above, "hybrid.above")


@dataclass(frozen=True)
class ScoredConfig:
    """Everything the scored dispatcher reads; see the module docstring for meanings."""

    dispatch: DispatchParams = field(default_factory=DispatchParams)
    weights: dict[str, float] = field(default_factory=lambda: {
        "prefix_load": 1.0, "least_load": 0.3, "kv_use": 0.1, "stickiness": 0.3})
    prefix_load: PrefixLoadParams = field(default_factory=PrefixLoadParams)
    kv_use: KvUseParams = field(default_factory=KvUseParams)
    stickiness: StickinessParams = field(default_factory=StickinessParams)
    cache_affinity: CacheAffinityParams = field(default_factory=CacheAffinityParams)
    predicted_load: PredictedLoadParams = field(default_factory=PredictedLoadParams)
    least_load: LeastLoadParams = field(default_factory=LeastLoadParams)
    hybrid: HybridParams | None = None

    def __post_init__(self) -> None:
        _check_weights(self.weights, "weights")

    def weight_sets(self) -> list[dict[str, float]]:
        """Every weight table in use (one, or two with [hybrid])."""
        if self.hybrid is None:
            return [self.weights]
        return [self.hybrid.below, self.hybrid.above]

    def scorers_in_use(self) -> set[str]:
        """Scorers with a positive weight in some weight table."""
        return {name for table in self.weight_sets() for name, w in table.items() if w > 0}


_SECTIONS: dict[str, type] = {
    "dispatch": DispatchParams, "prefix_load": PrefixLoadParams, "kv_use": KvUseParams,
    "stickiness": StickinessParams, "cache_affinity": CacheAffinityParams,
    "predicted_load": PredictedLoadParams,
    "least_load": LeastLoadParams, "hybrid": HybridParams,
}


def _coerce(value: Any, annotation: str, key: str) -> Any:
    """Check a TOML value against a dataclass field annotation (int accepted for float)."""
    if annotation == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = {"float": float, "int": int, "str": str, "bool": bool}.get(annotation)
    if expected is not None:
        ok = isinstance(value, expected) and (expected is bool or not isinstance(value, bool))
        _require(ok, key, {"float": "a number", "int": "an integer", "str": "a string",
                           "bool": "true or false"}[annotation], value)
        return value
    if annotation.startswith("dict"):  # a weight table; checked in __post_init__
        _require(isinstance(value, dict), key, "a table of scorer = weight", value)
        return dict(value)
    raise AssertionError(f"unhandled field type {annotation}")


def build_table(cls: type, table: Any, key: str) -> Any:
    """An instance of dataclass ``cls`` from the TOML table ``table`` found at ``key``; an unknown
    key or a value of the wrong type raises ValueError naming ``key`` and the field."""
    _require(isinstance(table, dict), key, "a table", table)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ValueError(f"{key}.{unknown[0]}: unknown key; expected one of {', '.join(fields)}")
    values = {name: _coerce(value, fields[name].type, f"{key}.{name}")
              for name, value in table.items()}
    return cls(**values)


def config_from_dict(data: dict[str, Any]) -> ScoredConfig:
    """Validate a parsed TOML document. Raises ValueError naming the dotted key."""
    unknown = sorted(set(data) - set(_SECTIONS) - {"weights"})
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown table; expected one of "
                         f"{', '.join(['weights', *_SECTIONS])}")
    values: dict[str, Any] = {name: build_table(cls, data[name], name)
                              for name, cls in _SECTIONS.items() if name in data}
    if "weights" in data:
        values["weights"] = _coerce(data["weights"], "dict", "weights")
    return ScoredConfig(**values)


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> ScoredConfig:
    """Read and validate a TOML file whose top-level tables ``overrides`` replaces (e.g. a weight
    variant). Raises ValueError (or OSError) naming ``path``."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return config_from_dict({**data, **(overrides or {})})
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
