"""How fast the cluster simulator runs: 100,000 requests over 32 engines on one core (target < 60 s).

Workload: ``--requests`` requests whose (input, output) lengths are drawn with replacement from the
Azure 2023 conv trace (real lengths), arriving as a Poisson process at ``--rate`` requests/s
(default 160/s = 5/s per engine, about 1,050 output tokens/s per simulated H100). Each
configuration (request policy + dispatcher) is simulated once with the ``qwen3-30b-a3b-h100`` step
model. Reported: simulated engine steps, CPU seconds of this process (``time.process_time``; a busy
shared machine inflates wall time far more), wall seconds, the time to build the run records and
summary, and the simulated TTFT/TPOT, so the figure belongs to a run that did real work.

Usage: python experiments/benchmarks/sim_scale.py [--requests 100000] [--engines 32] [--rate 160]
       [--configs fcfs:round-robin,sjf-aging:scored,lpm:cache-aware] [--out results/sim_scale.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from engine_dispatch.factory import create_dispatcher
from experiments.sim.cluster import simulate
from experiments.sim.config import ClusterConfig, EngineConfig
from experiments.sim.results import run_result
from experiments.workloads.azure import load_azure_csv
from experiments.workloads.types import TraceRequest
from moesched_base.atomic import atomic_write_json
from perf_model.presets import preset_model
from request_sched.policies import create_queue

REPO = Path(__file__).resolve().parents[2]
GPU_MODEL = "qwen3-30b-a3b-h100"


def make_workload(count: int, rate: float, seed: int) -> list[TraceRequest]:
    """``count`` requests with Azure-conv lengths (resampled) and Poisson arrivals at ``rate``/s."""
    trace = load_azure_csv(REPO / "data/traces/azure2023_conv.csv")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(trace), size=count)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, size=count))
    return [TraceRequest(f"s{i}", float(t), trace[j].input_tokens, trace[j].output_tokens)
            for i, (j, t) in enumerate(zip(picks.tolist(), arrivals.tolist()))]


def measure(workload: list[TraceRequest], engines: int, policy: str, dispatch: str) -> dict[str, object]:
    """Simulate once; times and the simulated latencies."""
    model = preset_model(GPU_MODEL)
    options = {"step_model": model, "block_tokens": 512} if dispatch == "scored" else {}
    config = ClusterConfig(engines=engines, engine=EngineConfig(), queue_factory=lambda: create_queue(policy))
    dispatcher = create_dispatcher(dispatch, engines, **options)
    cpu, wall = time.process_time(), time.perf_counter()
    result = simulate(workload, config, model, dispatcher)
    sim_cpu, sim_wall = time.process_time() - cpu, time.perf_counter() - wall
    cpu = time.process_time()
    summary = run_result(result, f"{policy}+{dispatch}", {}).summary
    return {"policy": policy, "dispatch": dispatch, "engine_steps": result.steps,
            "preemptions": result.preemptions, "sim_cpu_s": sim_cpu, "sim_wall_s": sim_wall,
            "results_cpu_s": time.process_time() - cpu, "completed": summary["completed"],
            "ttft_mean_ms": summary["ttft_ms"]["mean"], "ttft_p99_ms": summary["ttft_ms"]["p99"],
            "tpot_mean_ms": summary["tpot_ms"]["mean"], "output_throughput": summary["output_throughput"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--engines", type=int, default=32)
    parser.add_argument("--rate", type=float, default=160.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--configs", default="fcfs:round-robin,sjf-aging:scored,lpm:cache-aware",
                        help="comma-separated POLICY:DISPATCH pairs")
    parser.add_argument("--out", default=str(REPO / "results/sim_scale.json"))
    args = parser.parse_args()
    workload = make_workload(args.requests, args.rate, args.seed)
    rows = []
    header = (f"{'policy+dispatch':<22} {'requests':>8} {'engines':>7} {'steps':>9} {'sim CPU s':>9} "
              f"{'sim wall s':>10} {'records s':>9} {'TTFT mean':>9} {'TTFT p99':>9} {'TPOT mean':>9}")
    print(header)
    for pair in args.configs.split(","):
        policy, _, dispatch = pair.partition(":")
        row = measure(workload, args.engines, policy, dispatch)
        rows.append(row)
        print(f"{policy + '+' + dispatch:<22} {args.requests:>8} {args.engines:>7} {row['engine_steps']:>9} "
              f"{row['sim_cpu_s']:>9.1f} {row['sim_wall_s']:>10.1f} {row['results_cpu_s']:>9.1f} "
              f"{row['ttft_mean_ms']:>9.1f} {row['ttft_p99_ms']:>9.1f} {row['tpot_mean_ms']:>9.1f}")
    atomic_write_json(args.out, {
        "benchmark": "sim_scale", "requests": args.requests, "engines": args.engines, "rate_rps": args.rate,
        "seed": args.seed, "gpu_model": GPU_MODEL, "target_s": 60.0, "python": platform.python_version(),
        "machine": platform.machine(), "load_average_1m": os.getloadavg()[0], "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
