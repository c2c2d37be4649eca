"""The SLO token budget on a real SGLang CPU server, priced by the scheduler's own online model.

Two plugin configurations of the same SGLang 0.5.23 CPU server (tiny Qwen3-MoE, one rank,
``--max-running-requests 16 --enable-mixed-chunk``, KV 65,536 tokens), request order and DP
dispatch left stock so only the budget differs:

- ``budget``: ``[refit]`` (online step model from ``--base-model``, fed by every scheduler step)
  and ``[budget] step_model = "refit"`` at ``--tpot-slo-ms``;
- ``no-budget``: the same ``[refit]``, no ``[budget]``.

Each round starts a fresh server per configuration (in alternating order), warms it up and
replays the Azure conv trace (``--requests`` requests clipped to 2,048 tokens, at ``--rate``).
Prints mean/P99 TTFT, mean/P99 TPOT, P99 ITL and output tokens/s per run, the scheduler's own
step times during the replay by kind (decode-only, prefill-only, mixed: prefill beside decodes;
from the ``[refit]`` step log) with its online model's one-step-ahead predictions of them, and
the pooled ratios budget / no-budget; writes JSON (``--out``).
The server logs (``logs/engines/``) carry the budget's decisions (``moesched token budget``) and
the online model's scale (``moesched step model``).

Usage: python experiments/benchmarks/budget_real.py --base-model FILE|PRESET [--rate 4.04]
       [--rounds 2] [--tpot-slo-ms 30] [--requests 120] [--out results/budget_real/budget_refit_sglang_cpu.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

from experiments.benchmarks.sim_fidelity import MAX_MODEL_LEN, MODEL, TRACE, warm_up
from experiments.engines import EngineServer, ServerConfig, pick_free_port
from experiments.engines.step_log import read_step_lines, step_log_config
from experiments.fidelity.calibration import run_window
from experiments.fidelity.invoke import run_moesched
from experiments.fidelity.replay import SGLANG_KV_TOKENS
from experiments.metrics.runs import load_runs
from moesched_base.atomic import atomic_write_json, atomic_write_text
from perf_model.model_file import resolve_model

VARIANTS = ("budget", "no-budget")
METRICS = (("ttft_ms", "mean"), ("ttft_ms", "p99"), ("tpot_ms", "mean"), ("tpot_ms", "p99"), ("itl_ms", "p99"))


def plugin_config(base_model: str, tpot_slo_ms: float | None, steps_path: Path) -> str:
    """The moesched TOML of one variant: the step-log config (``[refit]`` only, its steps to
    ``steps_path``), plus ``[budget]`` on the refit model when ``tpot_slo_ms`` is given; request
    order and DP dispatch stock."""
    text = step_log_config(base_model, steps_path, (0.1, 10.0)) + "[log]\nfirst_orderings = 3\nsummary_interval_s = 10.0\n"
    if tpot_slo_ms is not None:
        text += f"[budget]\nenabled = true\ntpot_slo_ms = {tpot_slo_ms!r}\nstep_model = \"refit\"\nmin_tokens = 64\n"
    return text


def step_kinds(steps: list[dict[str, Any]]) -> dict[str, float]:
    """Count, mean duration (ms) and mean one-step-ahead prediction of the scheduler's online model
    (ms) of logged steps by kind: ``decode`` (no prefill), ``prefill`` (no decodes), ``mixed``
    (prefill beside decodes)."""
    kinds: dict[str, list[dict[str, Any]]] = {"decode": [], "prefill": [], "mixed": []}
    for row in steps:
        kinds[("mixed" if row["decode_seqs"] else "prefill") if row["prefill_tokens"] else "decode"].append(row)
    out: dict[str, float] = {}
    for kind, rows in kinds.items():
        out[f"steps_{kind}"] = float(len(rows))
        out[f"step_{kind}_ms"] = statistics.fmean(1e3 * r["step_s"] for r in rows) if rows else 0.0
        out[f"step_{kind}_predicted_ms"] = statistics.fmean(1e3 * r["predicted_s"] for r in rows) if rows else 0.0
    return out


def replay(config_path: Path, steps_path: Path, work: Path, out: Path, rate: float, requests: int,
           seed: int) -> dict[str, Any]:
    """One fresh server with ``config_path`` (its step log in ``steps_path``), warmed up, replaying
    the trace; the run's summary and the kinds of steps the scheduler ran during it."""
    server_config = ServerConfig("sglang", pick_free_port(),
                                 extra_args=("--max-running-requests", "16", "--enable-mixed-chunk"),
                                 max_model_len=MAX_MODEL_LEN, sglang_max_total_tokens=SGLANG_KV_TOKENS,
                                 sglang_plugins=True,
                                 extra_env={"MOESCHED_ENABLE": "1", "MOESCHED_CONFIG": str(config_path)})
    with EngineServer(server_config) as server:
        warm_up(server.base_url, work)
        run_moesched(["bench", "--trace", str(TRACE), "--format", "azure", "--max-requests", str(requests),
                      "--max-total-tokens", str(MAX_MODEL_LEN), "--rate", str(rate), "--seed", str(seed),
                      "--endpoint", f"real={server.base_url}", "--tokenizer", str(MODEL), "--no-progress",
                      "--out", str(out)])
        log = str(server.log_path)
    run = load_runs(out)[0]
    start, end = run_window(run)
    during = [row for row in read_step_lines(steps_path) if start <= row["end_s"] <= end]
    return {**{f"{key}.{stat}": run.summary[key][stat] for key, stat in METRICS},
            "output_tok_s": run.summary["output_throughput"], **step_kinds(during), "server_log": log}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", required=True, help="refit base model: a preset or a coefficient file")
    parser.add_argument("--rate", type=float, default=4.04, help="replay rate (req/s)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=120)
    parser.add_argument("--tpot-slo-ms", type=float, default=30.0)
    parser.add_argument("--work-dir", default="/tmp/moesched_budget_real")
    parser.add_argument("--out", default="results/budget_real/budget_refit_sglang_cpu.json")
    args = parser.parse_args(argv)
    try:
        resolve_model(args.base_model)
        if args.rounds < 1 or args.requests < 1 or args.rate <= 0 or args.tpot_slo_ms <= 0:
            raise ValueError("--rounds, --requests: expected >= 1; --rate, --tpot-slo-ms: expected > 0")
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    base = str(Path(args.base_model).resolve()) if Path(args.base_model).is_file() else args.base_model
    runs: list[dict[str, Any]] = []
    for r in range(args.rounds):
        for variant in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
            steps = work / f"r{r}_{variant}.steps.jsonl"
            steps.unlink(missing_ok=True)
            config = atomic_write_text(work / f"r{r}_{variant}.toml", plugin_config(
                base, args.tpot_slo_ms if variant == "budget" else None, steps))
            row = {"round": r, "variant": variant,
                   **replay(config, steps, work, work / f"r{r}_{variant}.json", args.rate, args.requests, r)}
            runs.append(row)
            print("  ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                            if k != "server_log"), flush=True)
    ratios = {f"{key}.{stat}": statistics.fmean(r[f"{key}.{stat}"] for r in runs if r["variant"] == "budget")
              / statistics.fmean(r[f"{key}.{stat}"] for r in runs if r["variant"] == "no-budget")
              for key, stat in METRICS}
    print("budget / no-budget (means over rounds): " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    atomic_write_json(args.out, {"benchmark": "budget_real", "rate_rps": args.rate, "rounds": args.rounds,
                                 "requests": args.requests, "tpot_slo_ms": args.tpot_slo_ms,
                                 "base_model": args.base_model, "runs": runs, "ratios": ratios})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
