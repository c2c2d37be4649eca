"""Does a real CPU SGLang server slow down as it serves? The same replay, N times, on one server.

1. Start SGLang 0.5.23 (DP 1, the tiny Qwen3-MoE, ``--max-running-requests 16``) with the
   moesched plugin's step log only (:mod:`experiments.engines.step_log`: request order and
   dispatch stay SGLang's), warm it up.
2. Replay the first ``--requests`` Azure conv requests at ``--rate`` ``--replays`` times in a row
   (new prompt content each time, same lengths and arrival times), each with ``moesched bench``.
   With ``--flush-cache`` SGLang's ``/flush_cache`` runs before each replay: it resets the radix
   cache and the KV token-slot allocator (``token_to_kv_pool_allocator.clear()``).
3. Per replay: mean TTFT and TPOT, and the scheduler's logged decode steps against a fixed step
   model (``--coef``, e.g. the one ``sim_fidelity.py --step-log`` calibrated): predicted / measured
   decode time. A stationary engine keeps the ratio flat; a drifting one moves it.
4. Print a table and write ``--out`` (JSON, atomically).

Usage (from the repository root; ~3.5 min here):
    flock /work/locks/realengine .venv/bin/python experiments/benchmarks/engine_drift.py \\
        --coef results/sim_fidelity/sglang_fresh_step_log.json [--extra-args=--disable-radix-cache] [--flush-cache]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from experiments.benchmarks.sim_fidelity import MODEL, TRACE, warm_up
from experiments.cli import main as moesched
from experiments.engines import EngineServer, ServerConfig, pick_free_port
from experiments.engines.step_log import read_step_lines, shape_fields, write_step_log_config
from experiments.fidelity.calibration import calibrated_model, run_window
from experiments.fidelity.replay import SGLANG_KV_TOKENS
from experiments.metrics.runs import RunResult, load_runs
from moesched_base.atomic import atomic_write_json
from perf_model.batch import BatchShape
from perf_model.structural import StructuralStepModel


def decode_ratio(run: RunResult, steps: list[dict[str, Any]], model: StructuralStepModel) -> dict[str, float]:
    """The logged decode steps during ``run`` (monotonic clock: the recorder's ``end_s`` and the
    bench's ``round_start_monotonic_s``): count, measured and predicted seconds, and their ratio."""
    start, end = run_window(run)
    decode = [row for row in steps if row["prefill_tokens"] == 0 and start <= row["end_s"] <= end]
    measured = sum(row["step_s"] for row in decode)
    predicted = sum(model.step_seconds(BatchShape(**shape_fields(row))) for row in decode)
    return {"decode_steps": len(decode), "measured_s": measured, "predicted_s": predicted,
            "predicted_over_measured": predicted / measured if measured else float("nan")}


def flush_cache(base_url: str) -> None:
    """SGLang's ``POST /flush_cache`` (refused while requests run, so after a short pause)."""
    time.sleep(1.0)
    request = urllib.request.Request(f"{base_url}/flush_cache", method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read().decode(errors="replace")
    if "Cache flushed" not in body:
        raise RuntimeError(f"{base_url}/flush_cache: expected 'Cache flushed', got {body[:80]!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coef", type=Path, required=True, help="step model: coefficients or sim_fidelity JSON")
    parser.add_argument("--replays", type=int, default=5)
    parser.add_argument("--requests", type=int, default=120)
    parser.add_argument("--rate", type=float, default=5.65, help="req/s (near saturation for this server here)")
    parser.add_argument("--extra-args", default="", help="more SGLang flags, e.g. --disable-radix-cache")
    parser.add_argument("--flush-cache", action="store_true", help="POST /flush_cache before every replay")
    parser.add_argument("--out", type=Path, default=Path("results/engine_drift.json"))
    args = parser.parse_args(argv)
    if args.replays < 2 or args.requests < 1 or args.rate <= 0:
        parser.error("expected --replays >= 2, --requests >= 1 and --rate > 0")
    try:
        model = calibrated_model(args.coef)
    except (OSError, ValueError, KeyError) as exc:
        parser.error(f"--coef {args.coef}: expected a coefficients or sim_fidelity JSON file ({exc})")
    work = Path(tempfile.mkdtemp(prefix="moesched_drift_"))
    steps_path = work / "steps.jsonl"
    plugin = write_step_log_config(work / "moesched.toml", "qwen3-30b-a3b-h100", steps_path)
    extra = ("--max-running-requests", "16", *shlex.split(args.extra_args))
    config = ServerConfig("sglang", pick_free_port(), extra_args=extra, max_model_len=2048,
                          sglang_max_total_tokens=SGLANG_KV_TOKENS, sglang_plugins=True,
                          extra_env={"MOESCHED_ENABLE": "1", "MOESCHED_CONFIG": str(plugin)})
    runs = []
    with EngineServer(config) as server:
        warm_up(server.base_url, work)
        for i in range(args.replays):
            out = work / f"replay_{i}.json"
            if args.flush_cache:
                flush_cache(server.base_url)
            code = moesched(["bench", "--trace", str(TRACE), "--format", "azure", "--max-requests", str(args.requests),
                             "--max-total-tokens", "2048", "--rate", str(args.rate), "--seed", str(i),
                             "--endpoint", f"real={server.base_url}", "--tokenizer", str(MODEL),
                             "--no-progress", "--out", str(out)])
            if code != 0:
                raise RuntimeError(f"moesched bench exited {code} (replay {i})")
            runs.append(load_runs(out)[0])
    steps = read_step_lines(steps_path)
    rows = []
    print(f"{'replay':>6} {'TTFT mean ms':>12} {'TPOT mean ms':>12} {'decode steps':>12} {'pred/measured':>13}")
    for i, run in enumerate(runs):
        row = {"replay": i, "ttft_mean_ms": run.summary["ttft_ms"]["mean"],
               "tpot_mean_ms": run.summary["tpot_ms"]["mean"], **decode_ratio(run, steps, model)}
        rows.append(row)
        print(f"{i:>6} {row['ttft_mean_ms']:>12.1f} {row['tpot_mean_ms']:>12.2f} {row['decode_steps']:>12} "
              f"{row['predicted_over_measured']:>13.2f}")
    atomic_write_json(args.out, {"benchmark": "engine_drift", "coef": str(args.coef), "rate_rps": args.rate,
                                 "requests": args.requests, "extra_args": args.extra_args,
                                 "flush_cache": args.flush_cache,
                                 "server": " ".join(extra), "steps_file": str(steps_path), "replays": rows})
    print(f"wrote {args.out} (steps in {steps_path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
