"""Simulating measured replays and comparing them: the servers' limits as simulator settings,
as-sent and nominal-arrival simulations, pooling over rounds, the comparison table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine_dispatch.factory import create_dispatcher
from experiments.fidelity.invoke import run_moesched
from experiments.metrics.host_freezes import TimeWarp, record_to_wall
from experiments.metrics.runs import RunResult, load_runs
from experiments.metrics.summary import summarize
from experiments.sim.cluster import simulate as simulate_cluster
from experiments.sim.config import ClusterConfig, EngineConfig
from experiments.sim.results import run_result
from experiments.workloads.types import TraceRequest
from perf_model.model_file import load_model, load_request_overhead
from request_sched.policies import create_queue


@dataclass(frozen=True)
class EngineLimits:
    """The server's batching limits, as the simulator's flags (read from the engines' defaults).

    vLLM 0.32.0 CPU API server: ``max_num_batched_tokens`` 2048 (``EngineArgs.get_batch_defaults``,
    CPU branch), KV cache 1 GiB = 2,097,152 tokens (server log), admits a request when its first
    chunk fits. SGLang 0.5.23 CPU: ``chunked_prefill_size`` 4096 (server log), KV pool =
    ``--max-total-tokens``, admits when the whole uncached prompt fits, forms prefill batches in
    policy order and runs them without the decodes (``enable_mixed_chunk`` off): the simulator's
    ``prefill_order="policy"``; its overlap scheduler (on by default) outputs a batch's tokens
    after the next batch has run on a CPU: ``deferred_output``.
    """

    max_batched_tokens: int
    kv_capacity_tokens: int
    admit_first_chunk: bool
    prefill_order: str
    deferred_output: bool = False

    def engine_config(self, max_running: int, coef: Path) -> EngineConfig:
        """The simulated engine with these limits and ``coef``'s per-request overhead."""
        return EngineConfig(max_running=max_running, max_batched_tokens=self.max_batched_tokens,
                            kv_capacity_tokens=self.kv_capacity_tokens, admit_whole_prompt=not self.admit_first_chunk,
                            prefill_order=self.prefill_order, deferred_output=self.deferred_output,
                            request_overhead=load_request_overhead(coef))

    def sim_flags(self, max_running: int) -> list[str]:
        """The ``moesched simulate`` flags of these limits."""
        flags = ["--max-running", str(max_running), "--max-batched-tokens", str(self.max_batched_tokens),
                 "--kv-capacity-tokens", str(self.kv_capacity_tokens), "--prefill-order", self.prefill_order]
        return (flags + (["--admit-first-chunk"] if self.admit_first_chunk else [])
                + (["--deferred-output"] if self.deferred_output else []))


SGLANG_KV_TOKENS = 65536
#: vLLM V1 step forming vs SGLang 0.5.23's (prefill batches in policy order, no mixed chunk by default)
LIMITS = {"vllm": EngineLimits(2048, 2_097_152, True, "admission"),
          "sglang": EngineLimits(4096, SGLANG_KV_TOKENS, False, "policy", deferred_output=True)}


def simulate(coef: Path, replay: list[str], rate: float, flags: list[str], out: Path) -> RunResult:
    """``moesched simulate`` of the replay at ``rate`` on one engine."""
    run_moesched(["simulate", *replay, "--rate", str(rate), "--gpu-model", str(coef), "--engines", "1", *flags,
                  "--out", str(out)])
    return load_runs(out)[0]


def simulate_as_sent(coefs: Sequence[Path], runs: list[RunResult], engines: Sequence[EngineConfig],
                     warps: list[TimeWarp] | None = None) -> dict[str, Any]:
    """Simulate each measured round (``runs[i]`` with ``coefs[i]`` on ``engines[i]``) with the send
    times the client actually achieved (its ``start_s``: on a loaded machine the client sent some
    requests up to ~1.5 s late) and pool the simulated records like the measured ones. With
    ``warps`` (one per round), the round is simulated in running time (its host freezes removed)
    and the records mapped back to wall time: the engine model on a machine that froze when this
    one did."""
    simulated = []
    for i, run in enumerate(runs):
        model, engine = load_model(coefs[i]), engines[i]
        warp = warps[i] if warps is not None else TimeWarp([])
        origin = run.config.get("round_start_monotonic_s", [0.0])[0]
        sent = sorted(run.requests, key=lambda r: (r.start_s, r.request_id))
        workload = [TraceRequest(r.request_id, warp.running(origin + r.start_s) - warp.running(origin),
                                 r.input_tokens, r.output_tokens) for r in sent]
        config = ClusterConfig(engines=1, engine=engine, queue_factory=lambda: create_queue("fcfs"))
        result = run_result(simulate_cluster(workload, config, model, create_dispatcher("round-robin", 1)),
                            "sim-as-sent", {})
        if warps is not None:
            result.requests = [record_to_wall(r, warp, origin) for r in result.requests]
        simulated.append(result)
    return pooled_summary(simulated)


def delivery_stalls(run: RunResult, min_gap_s: float = 1.0) -> list[float]:
    """Gaps (s) of at least ``min_gap_s`` in which the server delivered no token to any request
    while some request was outstanding: the whole server stood still (on a shared machine, CPU
    starvation), which no step model reproduces."""
    tokens: list[float] = []
    spans = []
    for r in run.requests:
        if r.ok and r.ttft_ms is not None and r.e2e_ms is not None:
            first = r.start_s + r.ttft_ms / 1e3
            tokens.append(first)
            for gap in r.itl_ms:
                first += gap / 1e3
                tokens.append(first)
            spans.append((r.start_s, r.start_s + r.e2e_ms / 1e3))
    tokens.sort()
    return [b - a for a, b in zip(tokens, tokens[1:])
            if b - a >= min_gap_s and any(s <= a and b <= e for s, e in spans)]


def pooled_summary(runs: list[RunResult]) -> dict[str, Any]:
    """Summary over the records of several rounds (durations summed, as ``bench --repeat`` does)."""
    records = [r for run in runs for r in run.requests]
    return summarize(records, sum(run.summary["duration_s"] for run in runs))


def choose_rates(coef: Path, replay: list[str], flags: list[str], fractions: list[float], work: Path) -> list[float]:
    """Rates = simulated service rate (every request queued at once) times ``fractions``."""
    saturated = simulate(coef, replay, 1000.0, flags, work / "capacity.sim.json")
    service = saturated.summary["request_throughput"]
    print(f"simulated service rate {service:.2f} req/s")
    return [round(service * f, 2) for f in fractions]


def _error(sim: float | None, real: float | None) -> float | None:
    return None if sim is None or not real else (sim - real) / real


METRICS = (("TTFT mean", "ttft_ms", "mean"), ("TTFT p99", "ttft_ms", "p99"), ("TPOT mean", "tpot_ms", "mean"))


def compare(rates: list[float], real: dict[float, dict[str, Any]], rounds: dict[float, list[RunResult]],
            sims: dict[str, dict[float, dict[str, Any]]], labels: list[str]) -> list[dict[str, Any]]:
    """Measured (pooled rounds, and the min-max over single rounds) vs each simulation, printed."""
    table = []
    print(f"{'load':<16} {'rate':>5} {'metric':<10} {'measured ms':>11} {'rounds min-max':>16} "
          + " ".join(f"{name:>22}" for name in sims))
    for label, rate in zip(labels, rates):
        for metric, key, stat in METRICS:
            measured = real[rate][key][stat]
            per_round = [run.summary[key][stat] for run in rounds[rate]]
            row: dict[str, Any] = {"load": label, "rate_rps": rate, "metric": metric, "measured_ms": measured,
                                   "measured_rounds_ms": per_round}
            cells = []
            for name, sim in sims.items():
                simulated = sim[rate][key][stat]
                err = _error(simulated, measured)
                row[name] = {"simulated_ms": simulated, "relative_error": err}
                cells.append(f"{simulated:>12.1f} {'n/a' if err is None else f'{err:+.0%}':>9}")
            table.append(row)
            spread = f"{min(per_round):.0f}-{max(per_round):.0f}"
            print(f"{label:<16} {rate:>5g} {metric:<10} {measured:>11.1f} {spread:>16} " + " ".join(cells))
    return table
