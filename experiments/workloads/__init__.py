"""Workloads: what requests arrive when, with which lengths, prefixes and sessions.

A workload is a list of :class:`TraceRequest` sorted by arrival time. Loaders for real traces
(Azure 2023, Mooncake) and synthetic generators produce it; the benchmark client replays it
against real endpoints and the simulator replays it against simulated engines.
"""

from experiments.workloads.types import BLOCK_TOKENS, TraceRequest

__all__ = ["BLOCK_TOKENS", "TraceRequest"]
