"""The bundled traces the comparisons replay, by short name."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from experiments.workloads.load import WorkloadSpec, load_workload
from experiments.workloads.types import TraceRequest

#: repository root (the bundled data lives in ``data/``)
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class BundledTrace:
    """A trace file shipped in ``data/traces`` and the class tag its requests carry."""

    name: str
    path: str
    format: str
    workload_class: str

    def load(self, max_requests: int, rate_rps: float | None = None) -> list[TraceRequest]:
        """The first ``max_requests`` requests, arrivals rescaled to ``rate_rps`` (None: as recorded)."""
        return load_workload(WorkloadSpec(path=str(REPO_ROOT / self.path), format=self.format,
                                          workload_class=self.workload_class,
                                          max_requests=max_requests, rate_rps=rate_rps))


TRACES: dict[str, BundledTrace] = {t.name: t for t in (
    BundledTrace("azure-conv", "data/traces/azure2023_conv.csv", "azure", "conv"),
    BundledTrace("azure-code", "data/traces/azure2023_code.csv", "azure", "code"),
    BundledTrace("mooncake", "data/traces/mooncake_synthetic_trace.jsonl", "mooncake", "mooncake"),
)}


def bundled_trace(name: str) -> BundledTrace:
    """The trace called ``name``; ValueError naming the known ones otherwise."""
    try:
        return TRACES[name]
    except KeyError:
        raise ValueError(f"--traces: unknown trace {name!r}; expected some of {', '.join(TRACES)}") from None


def all_at_once(requests: list[TraceRequest], total: int) -> list[TraceRequest]:
    """At least ``total`` requests of the same mix, all arriving at time 0 (a saturating run).

    ``requests`` is repeated as often as needed; copy k gets ids ``<id>#k`` and prefix block ids
    shifted past every other copy's, so copies share no prefix (within a copy sharing is kept).
    """
    if not requests:
        return []
    span = 1 + max((b for r in requests for b in r.prefix_blocks), default=0)
    copies = max(1, -(-total // len(requests)))
    return [replace(r, request_id=f"{r.request_id}#{k}" if k else r.request_id, arrival_s=0.0,
                    prefix_blocks=tuple(b + k * span for b in r.prefix_blocks))
            for k in range(copies) for r in requests]
