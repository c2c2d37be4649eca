"""Routing statistics: how many tokens each expert serves and which experts follow which.

Everything the placement layer knows about a model's routing is a :class:`RoutingStats`:

- ``load`` [L, E]: tokens routed to logical expert e at MoE layer l, over all top-k slots;
- ``transitions`` [L-1, E, E] (optional): tokens whose top-1 expert is a at layer l and b at l+1;
- ``coactivation`` [L, E, E] (optional): tokens that select both a and b (a != b) at layer l;
  symmetric, zero diagonal;
- ``token_topk`` [L, T, k] (optional): a per-token sample of logical top-k ids, from which the
  DeepEP normal-mode fan-out is counted exactly.

Readers (``load_stats``):

- SGLang expert-distribution recorder dumps (``.pt``, read with ``torch.load(weights_only=True)``;
  torch is imported only for them): ``stat`` mode ``{"logical_count": [steps, L, E], ...}`` and
  ``per_token`` mode ``{"records": [{"topk_ids_of_layer": [L, T, k], ...}, ...],
  "last_physical_to_logical_map": [L, P]}``. Recorded top-k ids are physical slot ids (SGLang
  records after its logical->physical remap); they are mapped back with the dump's
  ``last_physical_to_logical_map``. Column 0 of ``topk_ids_of_layer`` is taken as the token's top-1.
- ``.npz`` / ``.json`` with ``logical_count`` [L, E] or [steps, L, E] and optional ``transitions``
  and ``coactivation``.
- The bundled OLMoE / Mixtral routing files (``data/routing/*_routing_counts.npz``, keys
  ``<domain>__counts_topk`` and ``<domain>__cross_top1``; pick the domain with ``domain``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class RoutingStats:
    """Routing counts of one model (shapes in the module docstring; counts are token counts)."""

    load: np.ndarray
    transitions: np.ndarray | None = None
    coactivation: np.ndarray | None = None
    token_topk: np.ndarray | None = None
    source: str = "<memory>"

    def __post_init__(self) -> None:
        validate_stats(self)

    @property
    def num_layers(self) -> int:
        return int(self.load.shape[0])

    @property
    def num_experts(self) -> int:
        return int(self.load.shape[1])


def _check_counts(source: str, field: str, arr: np.ndarray, shape: tuple[int, ...]) -> None:
    if arr.shape != shape:
        raise ValueError(f"{source}: field {field!r} has shape {list(arr.shape)}, expected {list(shape)}")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{source}: field {field!r} must be numeric, got dtype {arr.dtype}")
    if np.isnan(arr).any() or np.isinf(arr).any():
        raise ValueError(f"{source}: field {field!r} contains NaN or infinite counts")
    if (arr < 0).any():
        raise ValueError(f"{source}: field {field!r} contains negative counts")


def validate_stats(stats: RoutingStats) -> None:
    """Raise ``ValueError`` naming the source and field if any array is malformed."""
    src = stats.source
    if stats.load.ndim != 2 or stats.load.shape[0] < 1 or stats.load.shape[1] < 1:
        raise ValueError(f"{src}: field 'logical_count' must be [layers, experts] or "
                         f"[steps, layers, experts], got shape {list(stats.load.shape)}")
    num_layers, num_experts = stats.load.shape
    _check_counts(src, "logical_count", stats.load, (num_layers, num_experts))
    if stats.transitions is not None:
        _check_counts(src, "transitions", stats.transitions, (num_layers - 1, num_experts, num_experts))
    if stats.coactivation is not None:
        _check_counts(src, "coactivation", stats.coactivation, (num_layers, num_experts, num_experts))
    if stats.token_topk is not None:
        ids = stats.token_topk
        if ids.ndim != 3 or ids.shape[0] != num_layers:
            raise ValueError(f"{src}: field 'token_topk' has shape {list(ids.shape)}, "
                             f"expected [{num_layers}, tokens, k]")
        if ids.size and (ids.min() < 0 or ids.max() >= num_experts):
            raise ValueError(f"{src}: field 'token_topk' has expert ids outside [0, {num_experts})")


def stats_from_topk_ids(topk_ids: np.ndarray, num_experts: int, source: str = "<memory>",
                        keep_tokens: bool = True) -> RoutingStats:
    """Loads, top-1 transitions and co-activation from per-token logical top-k ids [L, T, k].

    Column 0 is the token's top-1 expert. ``coactivation[l, a, b]`` counts tokens choosing both a
    and b (a != b) at layer l.
    """
    ids = np.asarray(topk_ids, dtype=np.int64)
    if ids.ndim != 3:
        raise ValueError(f"{source}: field 'topk_ids_of_layer' must be [layers, tokens, k], "
                         f"got shape {list(ids.shape)}")
    if ids.size and (ids.min() < 0 or ids.max() >= num_experts):
        raise ValueError(f"{source}: field 'topk_ids_of_layer' has ids outside [0, {num_experts})")
    num_layers, _, k = ids.shape
    load = np.stack([np.bincount(ids[l].ravel(), minlength=num_experts) for l in range(num_layers)])
    top1 = ids[:, :, 0]
    pairs = num_experts * num_experts
    transitions = np.zeros((max(num_layers - 1, 0), pairs), dtype=np.int64)
    for l in range(num_layers - 1):
        transitions[l] = np.bincount(top1[l] * num_experts + top1[l + 1], minlength=pairs)
    first, second = np.nonzero(~np.eye(k, dtype=bool))  # ordered pairs of distinct top-k slots
    coactivation = np.zeros((num_layers, pairs), dtype=np.int64)
    for l in range(num_layers):
        coactivation[l] = np.bincount((ids[l][:, first] * num_experts + ids[l][:, second]).ravel(),
                                      minlength=pairs)
    transitions = transitions.reshape(-1, num_experts, num_experts)
    coactivation = coactivation.reshape(num_layers, num_experts, num_experts)
    return RoutingStats(load=load.astype(np.float64), transitions=transitions.astype(np.float64),
                        coactivation=coactivation.astype(np.float64),
                        token_topk=ids.astype(np.int32) if keep_tokens else None, source=source)


def _as_array(source: str, field: str, value: Any) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: field {field!r} is not a numeric array ({exc})") from None
    return arr


def _logical_count_2d(source: str, value: Any) -> np.ndarray:
    arr = _as_array(source, "logical_count", value)
    if arr.ndim == 3:
        _check_counts(source, "logical_count", arr, arr.shape)
        arr = arr.sum(axis=0)
    if arr.ndim != 2:
        raise ValueError(f"{source}: field 'logical_count' must be [layers, experts] or "
                         f"[steps, layers, experts], got shape {list(arr.shape)}")
    return arr


def stats_from_mapping(data: Mapping[str, Any], source: str) -> RoutingStats:
    """Stats from a dict with ``logical_count`` and optional ``transitions``/``coactivation``."""
    if "logical_count" not in data:
        raise ValueError(f"{source}: missing field 'logical_count' (found {sorted(data)})")
    load = _logical_count_2d(source, data["logical_count"])
    optional = {name: _as_array(source, name, data[name]) for name in ("transitions", "coactivation")
                if name in data and data[name] is not None}
    return RoutingStats(load=load, source=source, **optional)


def _per_token_dump(data: Mapping[str, Any], source: str) -> RoutingStats:
    records = data["records"]
    chunks = [np.asarray(r["topk_ids_of_layer"]) for r in records if "topk_ids_of_layer" in r]
    if not chunks:
        raise ValueError(f"{source}: field 'records' holds no 'topk_ids_of_layer' (was the recorder "
                         "in per_token mode?)")
    ids = np.concatenate(chunks, axis=1).astype(np.int64)
    if "last_physical_to_logical_map" not in data:
        raise ValueError(f"{source}: missing field 'last_physical_to_logical_map' needed to map "
                         "physical expert ids to logical ones")
    phy2log = np.asarray(data["last_physical_to_logical_map"], dtype=np.int64)
    if phy2log.ndim != 2 or phy2log.shape[0] != ids.shape[0]:
        raise ValueError(f"{source}: field 'last_physical_to_logical_map' has shape "
                         f"{list(phy2log.shape)}, expected [{ids.shape[0]}, physical experts]")
    if ids.max(initial=0) >= phy2log.shape[1]:
        raise ValueError(f"{source}: field 'topk_ids_of_layer' has ids >= {phy2log.shape[1]} physical slots")
    valid = (ids >= 0).all(axis=(0, 2))  # SGLang pads unused rows with -1
    ids = ids[:, valid, :]
    logical = np.take_along_axis(phy2log[:, None, :].repeat(ids.shape[1], 1), ids, axis=2)
    return stats_from_topk_ids(logical, int(phy2log.max()) + 1, source=source)


def _bundled_npz(data: Mapping[str, Any], source: str, domain: str | None) -> RoutingStats:
    domains = sorted({k.split("__")[0] for k in data if k.endswith("__counts_topk")})
    if domain is None:
        raise ValueError(f"{source}: holds several domains {domains}; choose one with --domain")
    if domain not in domains:
        raise ValueError(f"{source}: unknown domain {domain!r}; expected one of {domains}")
    return RoutingStats(load=_as_array(source, f"{domain}__counts_topk", data[f"{domain}__counts_topk"]),
                        transitions=_as_array(source, f"{domain}__cross_top1", data[f"{domain}__cross_top1"]),
                        source=f"{source}[{domain}]")


def load_stats(path: str | Path, domain: str | None = None) -> RoutingStats:
    """Read routing statistics from ``path`` (``.pt``, ``.npz`` or ``.json``; see module docstring).

    Raises ``ValueError`` (bad content) or ``OSError`` (unreadable file) naming the file.
    """
    path = Path(path)
    source = str(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object with 'logical_count'")
        return stats_from_mapping(data, source)
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                data = {k: npz[k] for k in npz.files}
        except ValueError as exc:
            raise ValueError(f"{source}: not a plain numeric .npz ({exc})") from None
        if "logical_count" in data:
            return stats_from_mapping(data, source)
        return _bundled_npz(data, source, domain)
    if suffix == ".pt":
        import torch  # only SGLang dumps need torch

        try:
            data = torch.load(path, weights_only=True, map_location="cpu")
        except RuntimeError as exc:
            raise ValueError(f"{source}: not a readable torch file ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a dict from SGLang's expert-distribution recorder")
        if "records" in data:
            return _per_token_dump(data, source)
        return stats_from_mapping({k: v.numpy() if hasattr(v, "numpy") else v for k, v in data.items()}, source)
    raise ValueError(f"{source}: unknown stats format {suffix!r}; expected .pt, .npz or .json")
