"""``moesched calibrate``: fit the step-latency model to measured steps and write its coefficients.

    moesched calibrate --steps steps.csv --like qwen3-30b-a3b-h100 --out coef.json
    moesched calibrate --steps cpu_steps.jsonl --num-experts 8 --top-k 2 --search-ridge --out cpu.json
    moesched calibrate --show qwen3-30b-a3b-h100

Rows: see :mod:`perf_model.samples_file`. The structure (experts, top-k, ridges) comes from a preset
(``--like``) or the flags; ``--search-ridge`` picks the dense ridge (tokens per step at which the
engine turns compute-bound) from a grid by R^2, for engines whose hardware figures are unknown (a CPU).
Rows with ``request_overheads`` (a lone request's TTFT) make the fit estimate the per-request
overhead as a term of its own (``request_overhead_s``), written as the file's ``request_overhead``
(:mod:`perf_model.request_overhead`) and used by ``moesched simulate``.
Prints R^2 and MAPE on the rows (and on a held-out share with ``--holdout``); the written file is
what ``moesched simulate --gpu-model FILE`` and the policies' ``step_model`` accept.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

import numpy as np

from perf_model.fit import REQUEST_OVERHEAD, FitReport, StepSample, evaluate, fit_step_model
from perf_model.model_file import save_model
from perf_model.presets import PRESETS, preset_names
from perf_model.request_overhead import RequestOverhead
from perf_model.samples_file import load_samples
from perf_model.structural import FEATURE_NAMES, ModelStructure, StepCoefficients

#: dense ridges tried by --search-ridge (tokens per step; inf = never compute-bound)
RIDGE_GRID = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, math.inf)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``moesched calibrate``."""
    parser.add_argument("--steps", help="measured steps: .csv, .json or .jsonl (see perf_model.samples_file)")
    parser.add_argument("--show", metavar="PRESET", choices=preset_names(),
                        help="print a preset's coefficients and its fit to its public rows, then exit")
    parser.add_argument("--like", choices=preset_names(), help="take the structure (experts, ridges) from a preset")
    parser.add_argument("--num-experts", type=int, default=0, help="routed experts per layer (0: dense model)")
    parser.add_argument("--top-k", type=int, default=0, help="experts per token")
    parser.add_argument("--dense-ridge-tokens", type=float, default=math.inf, help="dense compute-bound ridge")
    parser.add_argument("--moe-ridge-tokens", type=float, help="MoE ridge (default: dense ridge * E / k)")
    parser.add_argument("--search-ridge", action="store_true", help="choose the dense ridge from a grid by R^2")
    parser.add_argument("--fix", action="append", default=[], metavar="NAME=SECONDS",
                        help=f"keep a coefficient at a value instead of fitting it "
                             f"({', '.join((*FEATURE_NAMES, REQUEST_OVERHEAD))})")
    parser.add_argument("--holdout", type=float, default=0.0,
                        help="share of rows (0..0.5) held out to report out-of-sample R^2 and MAPE")
    parser.add_argument("--seed", type=int, default=0, help="seed of the hold-out split")
    parser.add_argument("--name", default="calibrated", help="name stored in the coefficients file")
    parser.add_argument("--out", help="coefficients JSON to write")


def _structure(args: argparse.Namespace, dense_ridge: float) -> ModelStructure:
    if args.like:
        base = PRESETS[args.like]().model.structure
        if args.search_ridge:
            ratio = base.moe_ridge_tokens / base.dense_ridge_tokens
            return replace(base, dense_ridge_tokens=dense_ridge, moe_ridge_tokens=dense_ridge * ratio)
        return base
    moe_ridge = args.moe_ridge_tokens
    if moe_ridge is None:
        moe_ridge = dense_ridge * args.num_experts / args.top_k if args.num_experts else math.inf
    return ModelStructure(num_experts=args.num_experts, top_k=args.top_k, dense_ridge_tokens=dense_ridge,
                          moe_ridge_tokens=moe_ridge)


def _fixed(args: argparse.Namespace) -> tuple[StepCoefficients, tuple[str, ...], float]:
    """(base coefficients, fixed names, fixed per-request overhead) from ``--fix``."""
    values: dict[str, float] = {}
    names = (*FEATURE_NAMES, REQUEST_OVERHEAD)
    for item in args.fix:
        name, eq, value = item.partition("=")
        if not eq or name not in names:
            raise ValueError(f"--fix {item!r}: expected NAME=SECONDS with NAME one of {', '.join(names)}")
        try:
            values[name] = float(value)
        except ValueError:
            raise ValueError(f"--fix {item!r}: expected a number of seconds") from None
    overhead = values.pop(REQUEST_OVERHEAD, None)
    fixed = tuple(values) + (() if overhead is None else (REQUEST_OVERHEAD,))
    return StepCoefficients(**values), fixed, overhead or 0.0


def _split(samples: list[StepSample], share: float, seed: int) -> tuple[list[StepSample], list[StepSample]]:
    if share <= 0:
        return samples, []
    order = np.random.default_rng(seed).permutation(len(samples))
    cut = int(round(len(samples) * share))
    held = set(order[:cut].tolist())
    return ([s for i, s in enumerate(samples) if i not in held], [s for i, s in enumerate(samples) if i in held])


def calibrate(args: argparse.Namespace, samples: list[StepSample]) -> FitReport:
    """Fit (searching the dense ridge when asked) and return the best report."""
    base, fixed, overhead = _fixed(args)
    ridges = RIDGE_GRID if args.search_ridge else (
        PRESETS[args.like]().model.structure.dense_ridge_tokens if args.like else args.dense_ridge_tokens,)
    reports = [fit_step_model(samples, _structure(args, ridge), base=base, fixed=fixed, name=args.name,
                              request_overhead_s=overhead)
               for ridge in ridges]
    return max(reports, key=lambda r: r.r2)


def _print_report(report: FitReport, label: str) -> None:
    s = report.model.structure
    print(f"{label}: {report.samples} steps, R^2 {report.r2:.4f}, MAPE {report.mape:.2%}")
    print(f"  structure: E={s.num_experts} k={s.top_k} dense ridge {s.dense_ridge_tokens:g} tokens, "
          f"MoE ridge {s.moe_ridge_tokens:g} tokens")
    for name in FEATURE_NAMES:
        mark = "fitted" if name in report.fitted else "fixed"
        print(f"  {name:<18} {getattr(report.model.coefficients, name):.6g}  ({mark})")
    mark = "fitted" if REQUEST_OVERHEAD in report.fitted else "fixed"
    print(f"  {REQUEST_OVERHEAD:<18} {report.request_overhead_s:.6g}  ({mark}; per request, not per step)")


def run(args: argparse.Namespace) -> int:
    """Fit and write; exit 0, or 2 on bad input (raised as ValueError/OSError)."""
    if args.show:
        _print_report(PRESETS[args.show](), f"preset {args.show} (fit to its public rows)")
        return 0
    if not args.steps or not args.out:
        raise ValueError("--steps and --out are required (or --show PRESET)")
    if args.num_experts and not args.top_k:
        raise ValueError("--top-k: expected >= 1 with --num-experts")
    if not 0 <= args.holdout <= 0.5:
        raise ValueError(f"--holdout: expected a share in [0, 0.5], got {args.holdout}")
    samples = load_samples(args.steps)
    train, held = _split(samples, args.holdout, args.seed)
    report = calibrate(args, train)
    _print_report(report, f"fit on {args.steps}")
    if held:
        r2, mape = evaluate(report.model, held, report.request_overhead_s)
        print(f"held out: {len(held)} steps, R^2 {r2:.4f}, MAPE {mape:.2%}")
    # only the sum enqueue + response is identifiable from TTFT rows; it is stored as enqueue_s
    save_model(args.out, report.model, report, RequestOverhead(enqueue_s=report.request_overhead_s))
    print(f"wrote {args.out}")
    return 0
