"""Per-request latency outside engine steps: what a server adds to every request besides batching.

A real server spends time on each request that no engine step accounts for: receiving and parsing
the HTTP request, tokenizing the prompt and handing it to the engine process (*enqueue*), and
detokenizing and streaming each token back (*response*). On a GPU cluster this is small next to
the steps; on the CPU engines it is not (a lone request's TTFT on vLLM CPU was 75-150 ms whatever
its prompt length, against a ~5-10 ms step), and without a term of its own a fit smears it over
every step (see docs/simulator.md, Fidelity).

Model (seconds, constants per request)::

    request reaches the engine's waiting queue  = sent + enqueue_s
    client receives the token of a step         = step end + response_s

so ``TTFT = enqueue_s + queueing + prefill steps + response_s``; TPOT and ITL are unchanged.
A lone request's TTFT identifies only the sum ``total_s`` (fitted as the ``request_overhead_s``
column of :func:`perf_model.fit.fit_step_model`); for one engine with constant overheads the split
does not change any TTFT, TPOT or E2E. ``moesched calibrate`` writes the fitted sum as ``enqueue_s``.
The GPU presets use 0 (no cited figure).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class RequestOverhead:
    """Per-request latency outside engine steps (seconds, >= 0).

    Attributes:
        enqueue_s: sent by the client -> in the engine's waiting queue (HTTP, tokenization, IPC).
        response_s: a step's end -> its token received by the client (detokenization, streaming).
    """

    enqueue_s: float = 0.0
    response_s: float = 0.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"request_overhead: {name} must be a finite number of seconds >= 0, "
                                 f"got {value!r}")

    @property
    def total_s(self) -> float:
        """What one request's TTFT gains from it (``enqueue_s + response_s``)."""
        return self.enqueue_s + self.response_s

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> RequestOverhead:
        """Inverse of :meth:`to_dict`; raises ValueError naming ``source`` and the bad field."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: request_overhead: expected an object with enqueue_s, response_s")
        unknown = set(data) - {"enqueue_s", "response_s"}
        if unknown:
            raise ValueError(f"{source}: request_overhead: unknown field(s) {', '.join(sorted(unknown))}")
        try:
            return cls(**{k: float(v) for k, v in data.items()})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from None
