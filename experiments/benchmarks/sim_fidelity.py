"""Simulator fidelity against a real CPU engine: calibrate, replay a trace at three loads, compare.

1. Start a real CPU server (vLLM or SGLang) on the tiny Qwen3-MoE with ``--max-running`` slots.
2. Each round (``--rounds``, interleaved so slow phases of a shared machine hit every phase alike):
   - calibration sweep with ``moesched bench`` (after a warm-up burst). Decode steps: B
     simultaneous requests with P-token prompts and 128 output tokens (3 repeats); their mean TPOT
     (one row per point: the mean over repeats and rounds) is a step of B decodes
     over ``B * (P + 64)`` KV tokens (TPOT excludes the first token, so neither the prefill nor
     the per-request overhead is in it). Prefill steps: 6 lone requests with P-token prompts and
     3 output tokens; their mean TTFT (over rounds) is one prefill step of P tokens *plus one per-request
     overhead* (HTTP, tokenization, IPC, detokenization, streaming), the row's
     ``request_overheads: 1``. The fit separates the two: the overhead is a column of its own, so
     it is not smeared over every step (``perf_model.fit``).
   - replay of the Azure conv trace (clipped to the server's max model length) at each rate.
   With ``--step-log`` (SGLang), the server runs the moesched plugin with only its step timing
   on (:mod:`experiments.engines.step_log`; request order and dispatch stay SGLang's own, the
   hook costs ~0.1 ms per step) and the calibration rows are the scheduler's own timed steps
   during the sweeps (every decode and prefill step, exact batch shapes); the per-request
   overhead is measured, not fitted: each lone prefill request's TTFT minus the logged steps up
   to its first token's output (its prefill step and, SGLang's overlap scheduler outputting a
   batch's tokens after the next batch ran, the step after it; mean over points and rounds),
   kept fixed in the fit, and the simulator defers every step's output the same way
   (``EngineConfig.deferred_output``). Lone TTFTs alone cannot separate a prefill step from the
   request's own costs, and on SGLang the step log shows prefill steps ~2-4x longer than that
   split assumed.
   With ``--fresh-server`` every sweep and every replay gets a newly started, warmed-up server:
   one SGLang 0.5.23 CPU server serving the same replay five times in a row took 1.4-1.5x longer
   per decode step by the fifth (``engine_drift.py``: its decode attention's KV gathers grow; not
   its radix cache, not the client), a drift the simulator's stationary engine does not have.
3. ``moesched calibrate`` on all rounds' rows (dense structure, ridge searched: the tiny model's 8
   experts are touched by almost every step, so a distinct-experts term is not identifiable).
   With ``--fit-on held-out-replays`` (needs ``--step-log`` and >= 2 rounds) each round is
   predicted by a model fitted on the steps the scheduler logged while serving the *other* rounds'
   replays (the per-request overhead still measured from the sweep's lone requests): calibrated
   on the engine serving this kind of traffic, never on the replay it predicts. The sweep's steps
   (uniform batches of a fresh server) under-predict the replays' by 7-12% at load.
   Without ``--rates`` the rates are chosen after round 0 from the calibrated simulator: its
   throughput with every request queued at once (the service rate) times ``--load-fractions``.
4. Simulate with the calibrated model (per-request overhead included) and the server's limits
   (max running, chunk size, KV capacity, admission rule): ``sim_as_sent`` replays each round
   with the arrival times the client actually achieved (its ``start_s``; on a loaded machine
   the client itself sends late), ``sim_trace_arrivals`` is ``moesched simulate`` of the trace
   at the nominal rate; ``sim_as_sent_with_freezes`` is ``sim_as_sent`` run in *running time*:
   the host freezes a heartbeat process saw during the round (whole-machine stalls of 0.2-1.5 s
   on this VM, :mod:`experiments.metrics.host_freezes`) are cut out of the send times and put
   back into the simulated token times.
5. Print measured (records of all rounds pooled) vs simulated mean TTFT, P99 TTFT and mean TPOT
   with the relative error, and write ``results/sim_fidelity/<engine>.json``; run JSON files stay
   in ``--work-dir``.

Usage: python experiments/benchmarks/sim_fidelity.py [--engine vllm|sglang] [--rounds 2]
       [--rates R1,R2,R3 | --load-fractions 0.4,0.9,1.3] [--requests 120] [--step-log] [--fresh-server]
       [--fit-on sweep|held-out-replays] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

from experiments.engines import EngineServer, ServerConfig, pick_free_port
from experiments.engines.step_log import read_step_lines, write_step_log_config
from experiments.fidelity.calibration import DECODE_OUTPUT, fit, held_out_fits
from experiments.fidelity.invoke import run_moesched
from experiments.fidelity.replay import (LIMITS, SGLANG_KV_TOKENS, choose_rates, compare, delivery_stalls,
                                         pooled_summary, simulate, simulate_as_sent)
from experiments.metrics.host_freezes import FreezeMonitor, TimeWarp
from experiments.metrics.runs import RunResult, load_runs
from moesched_base.atomic import atomic_write_json

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "tiny-qwen3-moe"
TRACE = REPO / "data" / "traces" / "azure2023_conv.csv"
MAX_MODEL_LEN = 2048


def _bench(url: str, out: Path, workload: list[str], reuse: bool, repeat: int = 1, seed: int = 0) -> RunResult:
    """The run of ``moesched bench`` against ``url`` (or the one stored in ``out`` with ``reuse``)."""
    if not (reuse and out.exists()):
        run_moesched(["bench", *workload, "--repeat", str(repeat), "--seed", str(seed), "--endpoint", f"real={url}",
                      "--tokenizer", str(MODEL), "--no-progress", "--cooldown", "0.5", "--out", str(out)])
    return load_runs(out)[0]


def _synthetic(path: Path, requests: int, rate: float, input_tokens: int, output_tokens: int) -> list[str]:
    path.write_text(json.dumps({"num_requests": requests, "rate_rps": rate,
                                "input": {"kind": "fixed", "mean": input_tokens},
                                "output": {"kind": "fixed", "mean": output_tokens}}))
    return ["--trace", str(path), "--format", "synthetic"]


def warm_up(url: str, work: Path) -> None:
    """A throwaway burst (the first requests after start-up pay one-off costs: lazy init, caches)."""
    _bench(url, work / "warmup.json", _synthetic(work / "warmup.spec.json", 8, 1000.0, 512, 32), reuse=False)


def sweep(url: str, work: Path, tag: str, decode: list[tuple[int, int]], prefill: list[int],
          reuse: bool, seed: int) -> dict[str, list[float]]:
    """One sweep round (see the module docstring); files ``<tag>_*.json``. Returns point name ->
    measured ms: each repeat's mean TPOT of a decode point, each request's TTFT of a prefill point."""
    measured: dict[str, list[float]] = {}
    for b, p in decode:
        name = f"decode_{b}x{p}"
        run = _bench(url, work / f"{tag}_{name}.json",
                     _synthetic(work / f"{name}.spec.json", b, 1000.0, p, DECODE_OUTPUT), reuse, repeat=3, seed=seed)
        measured[name] = [rep["tpot_ms"]["mean"] for rep in run.repeats if rep["tpot_ms"]["mean"] is not None]
    for p in prefill:
        name = f"prefill_{p}"
        # 3 output tokens: the plugin's step log times the prefill and the decode step after it
        # (a busy period's last step is never timed)
        run = _bench(url, work / f"{tag}_{name}.json", _synthetic(work / f"{name}.spec.json", 6, 1.0, p, 3), reuse,
                     seed=seed)
        measured[name] = [r.ttft_ms for r in run.requests if r.ok and r.ttft_ms is not None]
    return measured


def replay_real(url: str, out: Path, workload: list[str], reuse: bool, seed: int) -> tuple[RunResult, TimeWarp]:
    """One replay of the trace (``_bench``) with the host freezes seen during it (stored next to
    ``out`` as ``<name>.freezes.json``: monotonic-clock intervals, see :mod:`~experiments.metrics.host_freezes`)."""
    freezes_file = out.with_suffix(".freezes.json")
    if reuse and out.exists():
        freezes = json.loads(freezes_file.read_text()) if freezes_file.exists() else []
        return load_runs(out)[0], TimeWarp([tuple(f) for f in freezes])
    with FreezeMonitor() as monitor:
        run = _bench(url, out, workload, reuse=False, seed=seed)
    atomic_write_json(freezes_file, monitor.freezes)
    return run, TimeWarp(monitor.freezes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("vllm", "sglang"), default="vllm")
    parser.add_argument("--max-running", type=int, default=16, help="max running requests of the server")
    parser.add_argument("--rates", help="replay rates (req/s) for light, near saturation, overloaded")
    parser.add_argument("--load-fractions", default="0.4,0.9,1.3",
                        help="without --rates: fractions of the simulated service rate")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved sweep + replay rounds")
    parser.add_argument("--requests", type=int, default=120)
    parser.add_argument("--decode", default="1x32,4x32,8x32,16x32,4x1024,16x1024",
                        help="decode sweep points BxP (B requests, P-token prompts)")
    parser.add_argument("--prefill-lengths", default="16,512,1024,1792")
    parser.add_argument("--work-dir", default="/tmp/moesched_fidelity")
    parser.add_argument("--step-log", action="store_true",
                        help="SGLang: calibrate from the scheduler's own step log during the sweeps (plugin, step "
                             "timing only), the per-request overhead measured as lone TTFT minus the logged "
                             "prefill step, instead of TPOT/TTFT-derived rows")
    parser.add_argument("--fresh-server", action="store_true",
                        help="start (and warm up) a new server before every sweep and every replay: a SGLang "
                             "0.5.23 CPU server's steps slow down as it serves (docs/simulator.md)")
    parser.add_argument("--fit-on", choices=("sweep", "held-out-replays"), default="sweep",
                        help="calibrate on the sweep's steps, or predict each round with a model fitted on the "
                             "steps logged during the other rounds' replays (needs --step-log, >= 2 rounds)")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse bench results already in --work-dir (no server if all exist)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.step_log and args.engine != "sglang":
        parser.error("--step-log: only SGLang has the moesched plugin's step log; expected --engine sglang")
    if args.fit_on == "held-out-replays" and (not args.step_log or args.rounds < 2):
        parser.error("--fit-on held-out-replays: expected --step-log and --rounds >= 2")
    work = Path(args.work_dir) / args.engine
    work.mkdir(parents=True, exist_ok=True)
    # without the step log, lone TTFT rows fold the deferred step into the per-request overhead
    limits = replace(LIMITS[args.engine], deferred_output=LIMITS[args.engine].deferred_output and args.step_log)
    flags = limits.sim_flags(args.max_running)
    replay = ["--trace", str(TRACE), "--format", "azure", "--max-requests", str(args.requests),
              "--max-total-tokens", str(MAX_MODEL_LEN)]
    decode = [(int(b), int(p)) for b, p in (item.split("x") for item in args.decode.split(","))]
    prefill = [int(p) for p in args.prefill_lengths.split(",")]
    labels = ["light", "near saturation", "overloaded"]
    rates_file = work / "rates.json"
    rates = [float(r) for r in args.rates.split(",")] if args.rates else (
        json.loads(rates_file.read_text()) if args.reuse and rates_file.exists() else None)
    extra = (("--max-num-seqs", str(args.max_running)) if args.engine == "vllm"
             else ("--max-running-requests", str(args.max_running)))
    steps_path = work / "steps.jsonl"
    plugin_env: dict[str, str] = {}
    if args.step_log:
        plugin_config = write_step_log_config(work / "moesched-steps.toml", "qwen3-30b-a3b-h100", steps_path)
        plugin_env = {"MOESCHED_ENABLE": "1", "MOESCHED_CONFIG": str(plugin_config)}
        if not args.reuse:
            steps_path.unlink(missing_ok=True)
    config = ServerConfig(args.engine, pick_free_port(), extra_args=extra, max_model_len=MAX_MODEL_LEN,
                          sglang_max_total_tokens=SGLANG_KV_TOKENS, sglang_plugins=args.step_log,
                          extra_env=plugin_env)
    sweep_windows: list[tuple[float, float]] = []
    measured: dict[str, list[float]] = {}
    real_runs: dict[float, list[RunResult]] = {}
    warps: dict[float, list[TimeWarp]] = {}
    loads: list[float] = []
    started = time.time()
    server: EngineServer | None = None

    def restart() -> str:
        """Stop the server if one runs, start a fresh one, warm it up; returns its URL."""
        nonlocal server
        if server is not None:
            server.stop()  # the next one gets a new port: the old one may still be held
        server = EngineServer(replace(config, port=pick_free_port())).start()
        warm_up(server.base_url, work)
        return server.base_url

    try:
        for r in range(args.rounds):
            names = [f"r{r}_decode_{b}x{p}" for b, p in decode] + [f"r{r}_prefill_{p}" for p in prefill]
            names += [f"r{r}_real_{rate:g}" for rate in rates or []]
            needs_server = rates is None or not (args.reuse and all((work / f"{n}.json").exists() for n in names))
            if needs_server and (server is None or args.fresh_server):
                restart()
            url = server.base_url if server is not None else "http://unused"
            window_file = work / f"r{r}_sweep_window.json"
            window_start = time.monotonic()
            for name, values in sweep(url, work, f"r{r}", decode, prefill, args.reuse, seed=r).items():
                measured.setdefault(name, []).extend(values)
            if not (args.reuse and window_file.exists()):
                atomic_write_json(window_file, [window_start, time.monotonic()])
            sweep_windows.append(tuple(json.loads(window_file.read_text())))
            if rates is None:
                coef, _, _ = fit(measured, work, "round0", read_step_lines(steps_path) if args.step_log else None,
                                 sweep_windows, prefill, limits.deferred_output)
                rates = choose_rates(coef, replay, flags, [float(f) for f in args.load_fractions.split(",")], work)
                atomic_write_json(rates_file, rates)
            for rate in rates:
                out = work / f"r{r}_real_{rate:g}.json"
                if args.fresh_server and not (args.reuse and out.exists()):
                    url = restart()
                run, warp = replay_real(url, out, [*replay, "--rate", str(rate)], args.reuse, seed=r)
                real_runs.setdefault(rate, []).append(run)
                warps.setdefault(rate, []).append(warp)
            load_file = work / f"r{r}_load.json"
            if not (args.reuse and load_file.exists()):
                atomic_write_json(load_file, os.getloadavg()[0])
            loads.append(json.loads(load_file.read_text()))
    finally:
        if server is not None:
            server.stop()
    logged = read_step_lines(steps_path) if args.step_log else None
    coef, rows, overhead = fit(measured, work, f"tiny-qwen3-moe-{args.engine}-cpu", logged, sweep_windows, prefill,
                               limits.deferred_output)
    real = {rate: pooled_summary(runs) for rate, runs in real_runs.items()}
    coefs = ([coef] * args.rounds if args.fit_on == "sweep" else
             held_out_fits(logged, real_runs, work, f"tiny-qwen3-moe-{args.engine}-cpu", overhead or 0.0))
    engines = [limits.engine_config(args.max_running, c) for c in coefs]
    distinct = list(dict.fromkeys(coefs))
    sims = {"sim_as_sent": {rate: simulate_as_sent(coefs, real_runs[rate], engines) for rate in rates},
            "sim_as_sent_with_freezes": {rate: simulate_as_sent(coefs, real_runs[rate], engines, warps[rate])
                                         for rate in rates},
            "sim_trace_arrivals": {rate: pooled_summary([simulate(c, replay, rate, flags, work / f"sim_{rate:g}_{i}.json")
                                                         for i, c in enumerate(distinct)])
                                   for rate in rates}}
    table = compare(rates, real, real_runs, sims, labels)
    out_path = args.out or str(REPO / f"results/sim_fidelity/{args.engine}.json")
    atomic_write_json(out_path, {
        "benchmark": "sim_fidelity", "engine": args.engine, "max_running": args.max_running,
        "requests": args.requests, "rounds": args.rounds, "rates_rps": rates, "sim_flags": flags,
        "step_log": args.step_log, "fresh_server": args.fresh_server, "fit_on": args.fit_on,
        "held_out_coefficients": ([json.loads(c.read_text()) for c in coefs] if args.fit_on != "sweep" else None),
        "calibration_rows": rows if not args.step_log else f"{len(rows)} logged steps (in {steps_path})",
        "measured_request_overhead_s": overhead, "calibration_samples_ms": measured,
        "coefficients": json.loads(coef.read_text()),
        "per_round": {f"{rate:g}": [{"summary": run.summary, "stalled_s": sum(delivery_stalls(run)),
                                     "host_frozen_s": warp.frozen_s, "host_freezes": len(warp.freezes)}
                                    for run, warp in zip(runs, warps[rate])] for rate, runs in real_runs.items()},
        "load_average_1m_per_round": loads,
        "load_average_1m_median": statistics.median(loads) if loads else None,
        "script_wall_s": time.time() - started, "rows": table})
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
