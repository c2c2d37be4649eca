"""A seeded two-class (short/long) request mix, written as an Azure-format trace CSV.

The real-CPU comparison needs a workload where one long prompt can block many short ones: a
clear mix of two request classes arriving together above the servers' capacity for a short
window. Each request is ``long`` with probability ``long_fraction``, else ``short``; its prompt
and output lengths are drawn uniformly (inclusive) from its class's ranges; arrivals are Poisson at
``rate_rps``. The CSV (``TIMESTAMP,ContextTokens,GeneratedTokens``, the Azure 2023 columns) is
what ``moesched bench --format azure`` replays, so the comparison's exact bench command works on it
unchanged; request ``i`` of the CSV is ``azure-<i>`` in the bench records.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from moesched_base.atomic import atomic_write_text

#: the first arrival's wall-clock time in the CSV (only differences matter to the loader)
_EPOCH = datetime(2024, 1, 1)


@dataclass(frozen=True)
class RequestClass:
    """Inclusive token ranges of one class: prompt ``[prompt_min, prompt_max]``, output likewise."""

    prompt_min: int
    prompt_max: int
    output_min: int
    output_max: int

    def __post_init__(self) -> None:
        if not (1 <= self.prompt_min <= self.prompt_max and 1 <= self.output_min <= self.output_max):
            raise ValueError(f"request class: expected 1 <= min <= max for prompt and output, got {self}")


@dataclass(frozen=True)
class MixedWorkload:
    """``num_requests`` requests at ``rate_rps`` (Poisson), a ``long_fraction`` share of them long."""

    num_requests: int = 60
    rate_rps: float = 3.0
    long_fraction: float = 0.25
    short: RequestClass = RequestClass(32, 160, 4, 16)
    long: RequestClass = RequestClass(1024, 1900, 48, 128)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_requests < 1:
            raise ValueError(f"num_requests: expected >= 1, got {self.num_requests}")
        if not self.rate_rps > 0:
            raise ValueError(f"rate_rps: expected > 0, got {self.rate_rps}")
        if not 0.0 <= self.long_fraction <= 1.0:
            raise ValueError(f"long_fraction: expected a number in [0, 1], got {self.long_fraction}")
        if self.short.prompt_max >= self.long.prompt_min:
            raise ValueError("short.prompt_max must be below long.prompt_min (classes are told apart by prompt)")

    @property
    def short_prompt_limit(self) -> int:
        """A request is short iff its prompt has at most this many tokens."""
        return self.short.prompt_max

    def draw(self) -> list[tuple[float, int, int, bool]]:
        """``(arrival_s, prompt_tokens, output_tokens, is_long)`` per request, first arrival at 0."""
        rng = np.random.default_rng(self.seed)
        n = self.num_requests
        gaps = rng.exponential(1.0 / self.rate_rps, size=n - 1)
        arrivals = np.concatenate(([0.0], np.cumsum(gaps)))
        is_long = rng.random(n) < self.long_fraction
        rows = []
        for t, long_ in zip(arrivals, is_long):
            cls = self.long if long_ else self.short
            prompt = int(rng.integers(cls.prompt_min, cls.prompt_max + 1))
            output = int(rng.integers(cls.output_min, cls.output_max + 1))
            rows.append((float(t), prompt, output, bool(long_)))
        return rows

    def write_csv(self, path: str | os.PathLike[str]) -> list[tuple[float, int, int, bool]]:
        """Write the Azure-format CSV atomically; returns the rows written (see :meth:`draw`)."""
        rows = self.draw()
        lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
        for t, prompt, output, _ in rows:
            stamp = (_EPOCH + timedelta(seconds=t)).isoformat(sep=" ", timespec="microseconds")
            lines.append(f"{stamp},{prompt},{output}")
        atomic_write_text(path, "\n".join(lines) + "\n")
        return rows
