"""Workloads: what requests arrive when, with which lengths, prefixes and sessions.

A workload is a list of :class:`TraceRequest` sorted by arrival time. Loaders for real traces
(Azure 2023, Mooncake) and synthetic generators produce it; the benchmark client replays it
against real endpoints and the simulator replays it against simulated engines. Most callers want
:func:`load_workload` with a :class:`WorkloadSpec`.
"""

from experiments.workloads.azure import load_azure_csv
from experiments.workloads.load import LOADERS, WorkloadSpec, load_workload
from experiments.workloads.mooncake import load_mooncake_jsonl
from experiments.workloads.synthetic import LengthDist, SyntheticSpec, generate_synthetic
from experiments.workloads.transform import apply_transforms, cap, clip_context, mean_rate, scale_to_rate, window
from experiments.workloads.types import BLOCK_TOKENS, TraceRequest

__all__ = [
    "BLOCK_TOKENS", "LOADERS", "LengthDist", "SyntheticSpec", "TraceRequest", "WorkloadSpec", "apply_transforms",
    "cap", "clip_context", "generate_synthetic", "load_azure_csv", "load_mooncake_jsonl", "load_workload",
    "mean_rate", "scale_to_rate", "window",
]
