"""Router late binding on real engines: two vLLM CPU servers behind two routers, one plain and one
with ``--late-binding``; ``moesched bench`` replays the same bursty trace through both, interleaved
rounds (order rotated), and this script prints TTFT per router plus the late router's hold/move
counters, and writes a JSON.

    flock /work/locks/realengine nice -n -15 .venv/bin/python -m experiments.benchmarks.late_binding_real \\
        --rate 6 --max-requests 120 --repeat 2 --out results/late_binding_real/run.json

Both routers use ``--policy round-robin`` (the dispatch decision that late binding corrects) and
the rebalancer prices drain times with the vLLM CPU step model calibrated by
``experiments/benchmarks/sim_fidelity.py`` (``results/sim_fidelity/vllm_load3-6.json``,
``coefficients``). Must hold the real-engine lock (docs/engines.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from experiments.engines import EngineServer, ServerConfig, pick_free_port
from moesched_base.atomic import atomic_write_json

ROOT = Path(__file__).resolve().parents[2]
STEP_MODEL_SOURCE = ROOT / "results/sim_fidelity/vllm_load3-6.json"
MOESCHED = [sys.executable, "-m", "experiments.cli"]


def _wait_healthy(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"router {url} did not become healthy")


def _metrics(url: str) -> dict[str, float]:
    """The late-binding lines of a router's /metrics (name -> value)."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    wanted = ("moesched_router_held_total", "moesched_router_moves_total", "moesched_router_repicked_total",
              "moesched_router_withdrawn_total", "moesched_router_hold_seconds_sum",
              "moesched_router_hold_seconds_count", "moesched_router_retries_total")
    return {name: float(value) for name, value in (line.split() for line in text.splitlines()
                                                   if line.split()[0] in wanted)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", default="data/traces/azure2023_code.csv")
    parser.add_argument("--rate", type=float, default=6.0, help="mean arrival rate, requests/s")
    parser.add_argument("--max-requests", type=int, default=120)
    parser.add_argument("--max-total-tokens", type=int, default=1800)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--max-in-flight", type=int, default=4, help="hold.max_in_flight")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    coefficients = json.loads(STEP_MODEL_SOURCE.read_text())["coefficients"]
    work = Path(tempfile.mkdtemp(prefix="late_binding_"))
    step_model = work / "vllm_cpu_step_model.json"
    step_model.write_text(json.dumps(coefficients))
    late_toml = work / "late_binding.toml"
    late_toml.write_text(f'[hold]\nmax_in_flight = {args.max_in_flight}\nstep_model = "{step_model}"\n'
                         "[rebalance]\nlong_wait_s = 0.25\nmax_moves_per_s = 50.0\nmax_burst = 8\n"
                         "chunk_tokens = 2048\n")  # assumed prefill tokens per step (= max_model_len)
    loads = [os.getloadavg()[0]]
    routers: list[subprocess.Popen[bytes]] = []
    with EngineServer(ServerConfig("vllm", pick_free_port())) as first, \
            EngineServer(ServerConfig("vllm", pick_free_port())) as second:
        try:
            urls = {}
            for label, extra in (("plain", []), ("late", ["--late-binding", str(late_toml)])):
                port = pick_free_port()
                routers.append(subprocess.Popen(
                    [*MOESCHED, "route", "--worker-urls", first.base_url, second.base_url,
                     "--policy", "round-robin", "--load-kind", "vllm", "--port", str(port), *extra],
                    cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(work / f"{label}.log", "wb")))
                urls[label] = f"http://127.0.0.1:{port}"
                _wait_healthy(urls[label])
            bench_out = args.out.with_name(args.out.stem + "_bench.json")
            started = time.monotonic()
            code = subprocess.call(
                [*MOESCHED, "bench", "--trace", args.trace, "--format", "azure", "--rate", str(args.rate),
                 "--max-requests", str(args.max_requests), "--max-total-tokens", str(args.max_total_tokens),
                 "--endpoint", f"plain={urls['plain']}", "--endpoint", f"late={urls['late']}",
                 "--tokenizer", str(first.config.model), "--repeat", str(args.repeat), "--no-progress",
                 "--out", str(bench_out), "--markdown", str(bench_out.with_suffix(".md"))], cwd=ROOT)
            wall_s = time.monotonic() - started
            loads.append(os.getloadavg()[0])
            late_metrics = _metrics(urls["late"])
        finally:
            for router in routers:
                router.terminate()
                router.wait(timeout=20)
    runs = json.loads(bench_out.read_text())["runs"]
    table = {run["label"]: {k: run["summary"][k] for k in ("ttft_ms", "e2e_ms", "completed", "failed")}
             for run in runs}
    result = {"benchmark": "late_binding_real", "args": {k: str(v) for k, v in vars(args).items()},
              "bench_exit_code": code, "wall_s": wall_s, "load_average_1m": loads,
              "late_router_metrics": late_metrics, "summary": table}
    atomic_write_json(args.out, result)
    print(f"{'router':8} {'TTFT mean ms':>13} {'TTFT p99 ms':>12} {'E2E p99 ms':>11} {'done':>5} {'failed':>6}")
    for label, row in table.items():
        print(f"{label:8} {row['ttft_ms']['mean']:13.0f} {row['ttft_ms']['p99']:12.0f} "
              f"{row['e2e_ms']['p99']:11.0f} {row['completed']:5d} {row['failed']:6d}")
    print(f"late router: {late_metrics}; load average 1m {loads}; wall {wall_s:.0f} s")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
