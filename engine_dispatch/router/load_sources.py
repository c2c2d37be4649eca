"""Parse engines' load endpoints into :class:`~engine_dispatch.types.EngineLoad` fields.

- SGLang: ``GET /v1/loads?include=all&format=json`` -> ``{"loads": [per-DP-rank dicts]}``; ranks
  are summed: running = num_running_reqs, waiting = num_waiting_reqs, pending prefill =
  num_waiting_uncached_tokens, KV used / capacity = num_used_tokens / max_total_num_tokens.
- vLLM: ``GET /metrics`` (Prometheus text): running = vllm:num_requests_running, waiting =
  vllm:num_requests_waiting, KV fraction = vllm:kv_cache_usage_perc, capacity = num_gpu_blocks x
  block_size from the labels of vllm:cache_config_info (1,000,000 tokens if absent); vLLM reports
  no pending prefill tokens (0; the dispatcher adds its own dispatches since the report).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_SAMPLE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)')
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')
_VLLM_DEFAULT_CAPACITY = 1_000_000


@dataclass(frozen=True)
class LoadFields:
    """One engine's load as reported (tokens and request counts)."""

    running: int
    waiting: int
    pending_prefill_tokens: int
    kv_used_tokens: int
    kv_capacity_tokens: int


def parse_sglang_loads(body: Any) -> LoadFields:
    """SGLang ``/v1/loads`` JSON. Raises ValueError if it does not have that shape."""
    if not isinstance(body, dict) or not isinstance(body.get("loads"), list) or not body["loads"]:
        raise ValueError("expected an object with a non-empty 'loads' list")
    totals = {key: 0 for key in ("num_running_reqs", "num_waiting_reqs",
                                 "num_waiting_uncached_tokens", "num_used_tokens",
                                 "max_total_num_tokens")}
    for rank in body["loads"]:
        if not isinstance(rank, dict):
            raise ValueError("each entry of 'loads' must be an object")
        for key in totals:
            value = rank.get(key, 0)
            if not isinstance(value, (int, float)):
                raise ValueError(f"loads[].{key} must be a number")
            totals[key] += int(value)
    return LoadFields(totals["num_running_reqs"], totals["num_waiting_reqs"],
                      totals["num_waiting_uncached_tokens"], totals["num_used_tokens"],
                      max(1, totals["max_total_num_tokens"]))


def parse_prometheus(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text exposition -> ``{metric name: [(labels, value), ...]}`` (comments skipped)."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        labels = dict(_LABEL.findall(match.group(2) or ""))
        samples.setdefault(match.group(1), []).append((labels, value))
    return samples


def parse_vllm_metrics(text: str) -> LoadFields:
    """vLLM ``/metrics``. Raises ValueError if the running/waiting gauges are missing."""
    samples = parse_prometheus(text)

    def total(name: str) -> float:
        if name not in samples:
            raise ValueError(f"metric {name} missing")
        return sum(value for _, value in samples[name])

    capacity = 0
    for labels, _ in samples.get("vllm:cache_config_info", []):
        try:
            capacity += int(labels["num_gpu_blocks"]) * int(labels["block_size"])
        except (KeyError, ValueError):
            continue
    capacity = capacity or _VLLM_DEFAULT_CAPACITY
    usage_samples = samples.get("vllm:kv_cache_usage_perc", [])
    usage = max((value for _, value in usage_samples), default=0.0)
    return LoadFields(int(total("vllm:num_requests_running")),
                      int(total("vllm:num_requests_waiting")), 0,
                      int(usage * capacity), capacity)
