"""Simulator fidelity against a real CPU engine: calibrate, replay a trace at three loads, compare.

1. Start a real CPU server (vLLM by default) on the tiny Qwen3-MoE with ``--max-num-seqs``.
2. Calibration sweep with ``moesched bench``: decode steps = mean TPOT of B simultaneous requests
   (32-token prompts, 256 output tokens, 3 rounds) for B in ``--decode-batches`` (TPOT, not the median ITL:
   on a loaded CPU the stream delivers tokens in bursts, so single gaps are often ~0); prefill
   steps = median TTFT of 6 lone requests with P-token prompts (1 output token) for P in
   ``--prefill-lengths``. The rows go through ``moesched calibrate`` (dense ridge searched) as a
   dense structure (``--num-experts 0``): the tiny model's 8 experts are touched by almost every
   step, so a distinct-experts term is not identifiable from a handful of noisy CPU rows.
3. Replay the Azure conv trace (clipped to the server's max model length) at three rates with
   ``moesched bench`` and simulate the same workload with ``moesched simulate`` (one engine, the
   server's limits, the calibrated model).
4. Print measured vs simulated mean TTFT, P99 TTFT and mean TPOT with the relative error, and
   write ``results/sim_fidelity_<engine>.json`` (all run JSON files stay in ``--work-dir``).

Usage: python experiments/benchmarks/sim_fidelity.py [--engine vllm] [--rates 1,3,6] [--requests 120]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from experiments.cli import main as moesched
from experiments.engines import EngineServer, ServerConfig, pick_free_port
from experiments.metrics.runs import load_runs
from moesched_base.atomic import atomic_write_json

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "tiny-qwen3-moe"
TRACE = REPO / "data" / "traces" / "azure2023_conv.csv"
MAX_MODEL_LEN = 2048
MAX_BATCHED_TOKENS = 2048  # vLLM CPU default max_num_batched_tokens (notes: cpu-engines.md)


def _run(argv: list[str]) -> None:
    code = moesched(argv)
    if code not in (0, 1):
        raise RuntimeError(f"moesched {' '.join(argv[:1])} exited {code}")


def _bench(url: str, out: Path, workload: list[str], reuse: bool, repeat: int = 1) -> dict:
    """Summary of a bench run against ``url`` (or of ``out`` if it exists and ``reuse``)."""
    if reuse and out.exists():
        return load_runs(out)[0].summary
    _run(["bench", *workload, "--repeat", str(repeat), "--endpoint", f"real={url}", "--tokenizer", str(MODEL),
          "--no-progress", "--cooldown", "0.5", "--out", str(out)])
    return load_runs(out)[0].summary


def _synthetic(path: Path, requests: int, rate: float, input_tokens: int, output_tokens: int) -> list[str]:
    path.write_text(json.dumps({"num_requests": requests, "rate_rps": rate,
                                "input": {"kind": "fixed", "mean": input_tokens},
                                "output": {"kind": "fixed", "mean": output_tokens}}))
    return ["--trace", str(path), "--format", "synthetic"]


def sweep_rows(url: str, work: Path, batches: list[int], lengths: list[int], reuse: bool) -> list[dict]:
    """Measured step rows (decode from TPOT, prefill from TTFT)."""
    rows = []
    for b in batches:
        s = _bench(url, work / f"decode_{b}.json",
                   _synthetic(work / f"decode_{b}.spec.json", b, 1000.0, 32, 256), reuse, repeat=3)
        rows.append({"decode_seqs": b, "kv_context_tokens": b * (32 + 128), "step_ms": s["tpot_ms"]["mean"]})
    for p in lengths:
        s = _bench(url, work / f"prefill_{p}.json", _synthetic(work / f"prefill_{p}.spec.json", 6, 0.5, p, 1),
                   reuse)
        rows.append({"prefill_tokens": p, "kv_context_tokens": p, "step_ms": s["ttft_ms"]["p50"]})
    return rows


def _error(sim: float | None, real: float | None) -> float | None:
    return None if sim is None or not real else (sim - real) / real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("vllm", "sglang"), default="vllm")
    parser.add_argument("--max-num-seqs", type=int, default=16)
    parser.add_argument("--rates", default="1,3,6", help="replay rates (req/s): light, near saturation, overloaded")
    parser.add_argument("--requests", type=int, default=120)
    parser.add_argument("--decode-batches", default="1,2,4,8,16")
    parser.add_argument("--prefill-lengths", default="64,256,512,1024,1800")
    parser.add_argument("--work-dir", default="/tmp/moesched_fidelity")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse bench results already in --work-dir (no server if all exist)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    extra = (("--max-num-seqs", str(args.max_num_seqs)) if args.engine == "vllm"
             else ("--max-running-requests", str(args.max_num_seqs)))
    config = ServerConfig(args.engine, pick_free_port(), extra_args=extra, max_model_len=MAX_MODEL_LEN,
                          sglang_max_total_tokens=65536)
    rates = [float(r) for r in args.rates.split(",")]
    replay = ["--trace", str(TRACE), "--format", "azure", "--max-requests", str(args.requests),
              "--max-total-tokens", str(MAX_MODEL_LEN)]
    batches = [int(b) for b in args.decode_batches.split(",")]
    lengths = [int(p) for p in args.prefill_lengths.split(",")]
    names = ([f"decode_{b}" for b in batches] + [f"prefill_{p}" for p in lengths]
             + [f"real_{rate:g}" for rate in rates])
    if args.reuse and all((work / f"{name}.json").exists() for name in names):
        url = "http://unused"
        rows = sweep_rows(url, work, batches, lengths, True)
        real = {rate: _bench(url, work / f"real_{rate:g}.json", [], True) for rate in rates}
    else:
        with EngineServer(config) as server:
            rows = sweep_rows(server.base_url, work, batches, lengths, args.reuse)
            real = {rate: _bench(server.base_url, work / f"real_{rate:g}.json", [*replay, "--rate", str(rate)],
                                 args.reuse) for rate in rates}
    steps = work / "steps.json"
    steps.write_text(json.dumps(rows))
    coef = work / "coef.json"
    _run(["calibrate", "--steps", str(steps), "--search-ridge",
          "--name", f"tiny-qwen3-moe-{args.engine}-cpu", "--out", str(coef)])
    table = []
    print(f"{'rate':>5} {'metric':<10} {'measured ms':>11} {'simulated ms':>12} {'error':>7}")
    for rate in rates:
        out = work / f"sim_{rate:g}.json"
        _run(["simulate", *replay, "--rate", str(rate), "--gpu-model", str(coef), "--engines", "1",
              "--max-running", str(args.max_num_seqs), "--max-batched-tokens", str(MAX_BATCHED_TOKENS),
              "--kv-capacity-tokens", "1000000", "--admit-first-chunk", "--out", str(out)])
        sim = load_runs(out)[0].summary
        for metric, path in (("TTFT mean", ("ttft_ms", "mean")), ("TTFT p99", ("ttft_ms", "p99")),
                             ("TPOT mean", ("tpot_ms", "mean"))):
            measured, simulated = real[rate][path[0]][path[1]], sim[path[0]][path[1]]
            err = _error(simulated, measured)
            table.append({"rate_rps": rate, "metric": metric, "measured_ms": measured,
                          "simulated_ms": simulated, "relative_error": err})
            print(f"{rate:>5g} {metric:<10} {measured:>11.1f} {simulated:>12.1f} "
                  f"{'n/a' if err is None else f'{err:+.0%}':>7}")
    out_path = args.out or str(REPO / f"results/sim_fidelity_{args.engine}.json")
    atomic_write_json(out_path, {"benchmark": "sim_fidelity", "engine": args.engine,
                                 "max_num_seqs": args.max_num_seqs, "requests": args.requests,
                                 "calibration_rows": rows, "coefficients": json.loads(coef.read_text()),
                                 "load_average_1m": os.getloadavg()[0], "rows": table})
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
