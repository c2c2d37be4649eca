"""How well the online output-length predictor ranks and sizes requests on the bundled traces.

For each trace the requests are replayed in arrival order. Each request is predicted before its
own output is known; the predictor learns a request's true output only ``--lag`` requests later
(requests in flight have not finished yet). Reported per trace and predictor configuration:

* ``tau``: Kendall tau-b between predicted and actual output tokens (ranking quality, which is
  what SJF needs; 1 = perfect order, 0 = none);
* ``mae``: mean absolute error in tokens; ``bias``: mean (predicted - actual) in tokens;
* ``under``: share of requests predicted shorter than they are (they jump the SJF line).

Reference row ``tau(input, output)``: Kendall tau-b between prompt length and output length, the
ceiling of any predictor that only sees the prompt length. The traces carry no ``max_tokens``, so
every request is given a cap of ``--max-new-tokens`` (default 4096, above every trace output):
the cap never leaks the true length.

Usage: python experiments/benchmarks/predictor_accuracy.py [--lag 64] [--out results/predictor_accuracy.json]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from experiments.workloads import TraceRequest
from experiments.workloads.azure import load_azure_csv
from experiments.workloads.mooncake import load_mooncake_jsonl
from moesched_base.atomic import atomic_write_json
from request_sched.predictor import OutputLengthPredictor
from request_sched.types import WaitingRequest

REPO = Path(__file__).resolve().parents[2]
TRACES = {
    "azure-code": lambda: load_azure_csv(REPO / "data/traces/azure2023_code.csv", "code"),
    "azure-conv": lambda: load_azure_csv(REPO / "data/traces/azure2023_conv.csv", "conv"),
    "mooncake": lambda: load_mooncake_jsonl(REPO / "data/traces/mooncake_synthetic_trace.jsonl", "mooncake"),
}

#: configuration name -> predictor options (``tags`` False: workload_class hidden from the predictor)
CONFIGS: dict[str, dict] = {
    "global-mean": {"use_prompt_buckets": False, "tags": False, "beta": 0.0, "gamma": 0.0},
    "bucket-mean": {"use_prompt_buckets": True, "tags": False, "beta": 0.0, "gamma": 0.0},
    "bucket-mean+tags": {"use_prompt_buckets": True, "tags": True, "beta": 0.0, "gamma": 0.0},
    "bucket+tags+GAPS(b=0.5,g=0)": {"use_prompt_buckets": True, "tags": True, "beta": 0.5, "gamma": 0.0},
    "bucket+tags+GAPS(b=0,g=0.2)": {"use_prompt_buckets": True, "tags": True, "beta": 0.0, "gamma": 0.2},
}


def _count_inversions(values: np.ndarray) -> int:
    """Pairs i < j with values[i] > values[j] (strict), by a Fenwick tree over ranks; O(n log n)."""
    ranks = np.unique(values, return_inverse=True)[1] + 1
    size = int(ranks.max()) if ranks.size else 0
    tree = [0] * (size + 1)
    inversions = 0
    for seen, rank in enumerate(ranks.tolist()):
        i, not_greater = rank, 0
        while i > 0:  # count earlier values <= this one
            not_greater += tree[i]
            i -= i & -i
        inversions += seen - not_greater
        i = rank
        while i <= size:
            tree[i] += 1
            i += i & -i
    return inversions


def _tied_pairs(*columns: np.ndarray) -> int:
    """Pairs equal in every given column."""
    counts = np.unique(np.stack(columns, axis=1), axis=0, return_counts=True)[1].astype(np.int64)
    return int(np.sum(counts * (counts - 1) // 2))


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of two equal-length sequences (ties corrected), O(n log n) (Knight 1966).

    Sorting by ``(x, y)`` leaves the discordant pairs as the strict inversions of ``y``; then
    ``concordant = pairs - ties_x - ties_y + ties_xy - discordant``. Returns NaN when either
    sequence is constant.
    """
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"kendall_tau_b: expected two 1-D sequences of equal length, got {a.shape}, {b.shape}")
    n = a.size
    pairs = n * (n - 1) // 2
    ties_a, ties_b, ties_ab = _tied_pairs(a), _tied_pairs(b), _tied_pairs(a, b)
    discordant = _count_inversions(b[np.lexsort((b, a))])
    concordant = pairs - ties_a - ties_b + ties_ab - discordant
    denom = np.sqrt(float(pairs - ties_a) * float(pairs - ties_b))
    return float((concordant - discordant) / denom) if denom > 0 else float("nan")


def replay(requests: list[TraceRequest], options: dict, lag: int, max_new_tokens: int) -> np.ndarray:
    """Predicted total output tokens of every request, online in arrival order with feedback lag."""
    opts = dict(options)
    use_tags = opts.pop("tags")
    predictor = OutputLengthPredictor(**opts)
    waiting = [
        WaitingRequest(r.request_id, r.arrival_s, prompt_tokens=r.input_tokens,
                       max_new_tokens=max_new_tokens,
                       workload_class=r.workload_class if use_tags else None)
        for r in requests
    ]
    predicted = np.empty(len(requests))
    for i, w in enumerate(waiting):
        if i >= lag:
            predictor.observe(waiting[i - lag], requests[i - lag].output_tokens)
        predicted[i] = predictor.predict_total(w)
    return predicted


def evaluate(name: str, requests: list[TraceRequest], lag: int, max_new_tokens: int) -> list[dict]:
    """One row per configuration plus the tau(input, output) reference row."""
    actual = np.array([r.output_tokens for r in requests], dtype=np.float64)
    inputs = np.array([r.input_tokens for r in requests], dtype=np.float64)
    rows = [{"trace": name, "config": "tau(input, output)", "n": len(requests),
             "tau": kendall_tau_b(inputs, actual), "mae": None, "bias": None, "under": None}]
    for config, options in CONFIGS.items():
        predicted = replay(requests, options, lag, max_new_tokens)
        rows.append({
            "trace": name, "config": config, "n": len(requests),
            "tau": kendall_tau_b(predicted, actual),
            "mae": float(np.mean(np.abs(predicted - actual))),
            "bias": float(np.mean(predicted - actual)),
            "under": float(np.mean(predicted < actual)),
        })
    return rows


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lag", type=int, default=64,
                        help="requests between a prediction and learning that request's output (default 64)")
    parser.add_argument("--max-new-tokens", type=int, default=4096, help="output cap given to every request")
    parser.add_argument("--out", default=str(REPO / "results/predictor_accuracy.json"))
    args = parser.parse_args(argv)
    if args.lag < 0 or args.max_new_tokens < 1:
        raise SystemExit("predictor_accuracy: --lag must be >= 0 and --max-new-tokens >= 1")

    started = time.perf_counter()
    traces = {name: load() for name, load in TRACES.items()}
    mixed = sorted(traces["azure-code"] + traces["azure-conv"], key=lambda r: r.arrival_s)
    rows: list[dict] = []
    for name, requests in [*traces.items(), ("azure-code+conv", mixed)]:
        rows += evaluate(name, requests, args.lag, args.max_new_tokens)

    print(f"{'trace':<16} {'config':<28} {'n':>6} {'tau':>7} {'MAE':>8} {'bias':>8} {'under':>6}")
    for r in rows:
        print(f"{r['trace']:<16} {r['config']:<28} {r['n']:>6} {r['tau']:>7.3f} "
              f"{_fmt(r['mae'], '8.1f'):>8} {_fmt(r['bias'], '+8.1f'):>8} {_fmt(r['under'], '6.2f'):>6}")
    atomic_write_json(args.out, {
        "benchmark": "predictor_accuracy", "lag": args.lag, "max_new_tokens": args.max_new_tokens,
        "configs": CONFIGS, "rows": rows, "seconds": round(time.perf_counter() - started, 1),
    })
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
