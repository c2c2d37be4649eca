"""Metrics: per-request records, run summaries (``vllm bench serve`` definitions) and the run JSON.

The benchmark client (``experiments.bench``) and the simulator both produce
:class:`RunResult` objects and write them with :func:`dump_runs`; reports read them back with
:func:`load_runs`.
"""

from experiments.metrics.records import RequestRecord, tpot_ms
from experiments.metrics.runs import SCHEMA, RunResult, dump_runs, load_runs, run_from_dict, validate_summary
from experiments.metrics.summary import LATENCY_KEYS, STAT_KEYS, Slo, latency_stats, summarize

__all__ = ["LATENCY_KEYS", "SCHEMA", "STAT_KEYS", "RequestRecord", "RunResult", "Slo", "dump_runs", "latency_stats",
           "load_runs", "run_from_dict", "summarize", "tpot_ms", "validate_summary"]
