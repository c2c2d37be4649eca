"""Load any workload from a :class:`WorkloadSpec`: pick the loader by format, then apply transforms."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Callable

from moesched_base.json_file import read_json

from experiments.workloads.azure import load_azure_csv
from experiments.workloads.mooncake import load_mooncake_jsonl
from experiments.workloads.synthetic import SyntheticSpec, generate_synthetic
from experiments.workloads.transform import apply_transforms
from experiments.workloads.types import TraceRequest


def load_synthetic_json(path: str | os.PathLike[str], workload_class: str | None = None,
                        seed: int = 0) -> list[TraceRequest]:
    """Read a :class:`SyntheticSpec` from a JSON file and generate it with ``seed``."""
    obj = read_json(path, "a JSON synthetic spec")
    try:
        spec = SyntheticSpec.from_dict(obj)
    except ValueError as exc:
        raise ValueError(f"{os.fspath(path)}: {exc}") from None
    if workload_class is not None:
        spec = dataclasses.replace(spec, workload_class=workload_class)
    return generate_synthetic(spec, seed)


#: format name -> loader(path, workload_class, seed)
LOADERS: dict[str, Callable[[str, str | None, int], list[TraceRequest]]] = {
    "azure": lambda path, cls, seed: load_azure_csv(path, cls),
    "mooncake": lambda path, cls, seed: load_mooncake_jsonl(path, cls),
    "synthetic": load_synthetic_json,
}


@dataclass(frozen=True)
class WorkloadSpec:
    """Where a workload comes from and how to reshape it.

    Attributes:
        path: trace file (Azure CSV, Mooncake JSONL) or synthetic spec (JSON).
        format: a key of :data:`LOADERS`.
        workload_class: tag stored on each request (None keeps the loader's).
        seed: seed of synthetic generation.
        start_s, duration_s, max_requests, rate_rps, max_total_tokens: see
            :func:`experiments.workloads.transform.apply_transforms`.
    """

    path: str
    format: str
    workload_class: str | None = None
    seed: int = 0
    start_s: float = 0.0
    duration_s: float | None = None
    max_requests: int | None = None
    rate_rps: float | None = None
    max_total_tokens: int | None = None


def load_workload(spec: WorkloadSpec) -> list[TraceRequest]:
    """Load ``spec.path`` with the loader of ``spec.format`` and apply the spec's transforms.

    Raises:
        ValueError: unknown format (naming the known ones), or any loader/transform error.
        OSError: the file cannot be read.
    """
    loader = LOADERS.get(spec.format)
    if loader is None:
        raise ValueError(f"format: unknown workload format {spec.format!r}; expected one of {', '.join(LOADERS)}")
    requests = loader(spec.path, spec.workload_class, spec.seed)
    return apply_transforms(requests, start_s=spec.start_s, duration_s=spec.duration_s,
                            max_requests=spec.max_requests, rate_rps=spec.rate_rps,
                            max_total_tokens=spec.max_total_tokens)
