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
from dataclasses import dataclass, replace
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from engine_dispatch.factory import create_dispatcher
from experiments.cli import main as moesched
from experiments.engines import EngineServer, ServerConfig, pick_free_port
from experiments.engines.step_log import calibration_steps, read_step_lines, write_step_log_config
from experiments.metrics.host_freezes import FreezeMonitor, TimeWarp, record_to_wall
from experiments.metrics.runs import RunResult, load_runs
from experiments.metrics.summary import summarize
from experiments.sim.cluster import simulate as simulate_cluster
from experiments.sim.config import ClusterConfig, EngineConfig
from experiments.sim.results import run_result
from experiments.workloads.types import TraceRequest
from moesched_base.atomic import atomic_write_json
from perf_model.model_file import load_model, load_request_overhead
from perf_model.structural import StructuralStepModel
from request_sched.policies import create_queue

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "tiny-qwen3-moe"
TRACE = REPO / "data" / "traces" / "azure2023_conv.csv"
MAX_MODEL_LEN = 2048
DECODE_OUTPUT = 128


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
        flags = ["--max-running", str(max_running), "--max-batched-tokens", str(self.max_batched_tokens),
                 "--kv-capacity-tokens", str(self.kv_capacity_tokens), "--prefill-order", self.prefill_order]
        return (flags + (["--admit-first-chunk"] if self.admit_first_chunk else [])
                + (["--deferred-output"] if self.deferred_output else []))


SGLANG_KV_TOKENS = 65536
#: vLLM V1 step forming vs SGLang 0.5.23's (prefill batches in policy order, no mixed chunk by default)
LIMITS = {"vllm": EngineLimits(2048, 2_097_152, True, "admission"),
          "sglang": EngineLimits(4096, SGLANG_KV_TOKENS, False, "policy", deferred_output=True)}


def _run(argv: list[str]) -> None:
    code = moesched(argv)
    if code not in (0, 1):
        raise RuntimeError(f"moesched {' '.join(argv[:1])} exited {code}")


def _bench(url: str, out: Path, workload: list[str], reuse: bool, repeat: int = 1, seed: int = 0) -> RunResult:
    """The run of ``moesched bench`` against ``url`` (or the one stored in ``out`` with ``reuse``)."""
    if not (reuse and out.exists()):
        _run(["bench", *workload, "--repeat", str(repeat), "--seed", str(seed), "--endpoint", f"real={url}",
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


def calibration_rows(measured: dict[str, list[float]]) -> list[dict[str, Any]]:
    """One step row per sweep point: the mean over all repeats and rounds (the replay's means see
    the shared machine's slow moments too, so they are not filtered out). Decode ``BxP``: B
    decodes over ``B * (P + 64)`` KV tokens; prefill ``P``: one P-token prefill step plus one
    per-request overhead."""
    rows = []
    for name, values in measured.items():
        kind, _, size = name.partition("_")
        if kind == "decode":
            b, p = (int(x) for x in size.split("x"))
            rows.append({"decode_seqs": b, "kv_context_tokens": b * (p + DECODE_OUTPUT // 2),
                         "step_ms": statistics.fmean(values)})
        else:
            rows.append({"prefill_tokens": int(size), "kv_context_tokens": int(size), "request_overheads": 1,
                         "step_ms": statistics.fmean(values)})
    return rows


def calibrated_model(path: Path) -> StructuralStepModel:
    """The step model of a coefficients file, or of a result this script wrote (its
    ``coefficients`` entry). Raises ValueError (bad content) or OSError (unreadable)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and "coefficients" in data and "structure" not in data:
        return StructuralStepModel.from_dict(data["coefficients"], source=str(path))
    return load_model(path)


def lone_request_overhead_s(points: list[tuple[list[float], list[float]]]) -> float:
    """Per-request overhead (s) from lone requests: for each sweep point, the mean TTFT minus the
    mean logged time up to those requests' first-token output (``(ttfts_s, first_token_s)`` per
    point, :func:`logged_prefill_points`); the mean over points, at least 0. A direct measurement of
    what TTFT adds to the engine's steps."""
    if not points or any(not ttfts or not steps for ttfts, steps in points):
        raise ValueError("step log: expected every prefill sweep point to have TTFTs and logged prefill steps")
    return max(0.0, statistics.fmean(statistics.fmean(t) - statistics.fmean(st) for t, st in points))


def run_window(run: RunResult, tail_s: float = 0.5) -> tuple[float, float]:
    """Monotonic-clock seconds (start, end + ``tail_s``) of a bench run: the steps it caused end
    inside (the bench's ``round_start_monotonic_s`` and the step log share the clock)."""
    start = run.config["round_start_monotonic_s"][0]
    return start, start + run.summary["duration_s"] + tail_s


def logged_prefill_points(work: Path, rounds: int, prefill: list[int], steps: list[dict[str, Any]],
                          deferred_output: bool) -> list[tuple[list[float], list[float]]]:
    """``(TTFTs s, logged first-token times s)`` of each prefill sweep point of each round, from
    the steps that ended during that point's run (the recorder's ``end_s`` and the bench's
    ``round_start_monotonic_s`` share the monotonic clock): each lone request's prefill step, plus,
    with ``deferred_output``, the step logged right after it (its first token is output when that
    one ends; the sweep's 3 output tokens make it a timed decode step)."""
    points = []
    for r in range(rounds):
        for p in prefill:
            run = load_runs(work / f"r{r}_prefill_{p}.json")[0]
            start, end = run_window(run)
            inside = [row for row in steps if start <= row["end_s"] <= end]
            first_token = [row["step_s"] + (inside[i + 1]["step_s"] if deferred_output and i + 1 < len(inside)
                                            and inside[i + 1]["prefill_tokens"] == 0 else 0.0)
                           for i, row in enumerate(inside) if row["prefill_tokens"] > 0]
            points.append(([q.ttft_ms / 1e3 for q in run.requests if q.ok and q.ttft_ms is not None], first_token))
    return points


def calibrate(rows: list[dict[str, Any]], work: Path, name: str, request_overhead_s: float | None = None) -> Path:
    """Fit the rows with ``moesched calibrate`` (the per-request overhead kept at
    ``request_overhead_s`` when given); returns the coefficients file."""
    steps = work / f"{name}.steps.json"
    steps.write_text(json.dumps(rows))
    coef = work / f"{name}.coef.json"
    fix = ["--fix", f"request_overhead_s={request_overhead_s!r}"] if request_overhead_s is not None else []
    _run(["calibrate", "--steps", str(steps), "--search-ridge", *fix, "--name", name, "--out", str(coef)])
    return coef


def fit(measured: dict[str, list[float]], work: Path, name: str, steps_path: Path | None,
        windows: list[tuple[float, float]], prefill: list[int], deferred_output: bool = False
        ) -> tuple[Path, list[dict[str, Any]], float | None]:
    """Calibrate from the sweep's rows, or (``steps_path``, the step log) from the steps logged
    during the sweep ``windows`` with the per-request overhead measured from the lone prefill
    requests. Returns the coefficients file, the rows fitted and the measured overhead (s) or None."""
    if steps_path is None:
        rows = calibration_rows(measured)
        return calibrate(rows, work, name), rows, None
    logged = read_step_lines(steps_path)
    rows = calibration_steps(logged, windows)
    overhead = lone_request_overhead_s(logged_prefill_points(work, len(windows), prefill, logged,
                                                              deferred_output))
    return calibrate(rows, work, name, overhead), rows, overhead


def held_out_fits(steps_path: Path, rounds: dict[float, list[RunResult]], work: Path, name: str,
                  request_overhead_s: float) -> list[Path]:
    """One coefficients file per round: fitted on the steps logged during every *other* round's
    replays (``rounds``: rate -> runs in round order), the per-request overhead kept fixed."""
    logged = read_step_lines(steps_path)
    count = len(next(iter(rounds.values())))
    if count < 2:
        raise ValueError("--fit-on held-out-replays: expected >= 2 rounds")
    return [calibrate(calibration_steps(logged, [run_window(runs[other]) for runs in rounds.values()
                                                 for other in range(count) if other != held]),
                      work, f"{name}-held-out-r{held}", request_overhead_s)
            for held in range(count)]


def simulate(coef: Path, replay: list[str], rate: float, flags: list[str], out: Path) -> RunResult:
    """``moesched simulate`` of the replay at ``rate`` on one engine."""
    _run(["simulate", *replay, "--rate", str(rate), "--gpu-model", str(coef), "--engines", "1", *flags,
          "--out", str(out)])
    return load_runs(out)[0]


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
                coef, _, _ = fit(measured, work, "round0", steps_path if args.step_log else None, sweep_windows, prefill,
                                 limits.deferred_output)
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
    coef, rows, overhead = fit(measured, work, f"tiny-qwen3-moe-{args.engine}-cpu",
                               steps_path if args.step_log else None, sweep_windows, prefill, limits.deferred_output)
    real = {rate: pooled_summary(runs) for rate, runs in real_runs.items()}
    coefs = ([coef] * args.rounds if args.fit_on == "sweep" else
             held_out_fits(steps_path, real_runs, work, f"tiny-qwen3-moe-{args.engine}-cpu", overhead or 0.0))
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
