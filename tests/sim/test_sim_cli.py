"""``moesched simulate`` and ``moesched calibrate`` end to end (small inputs)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from experiments.cli import main
from experiments.metrics.runs import load_runs
from perf_model.batch import BatchShape
from perf_model.model_file import load_model
from perf_model.samples_file import load_samples
from perf_model.structural import ModelStructure, StepCoefficients, StructuralStepModel

REPO = Path(__file__).resolve().parents[2]
CONV = str(REPO / "data/traces/azure2023_conv.csv")
MOONCAKE = str(REPO / "data/traces/mooncake_synthetic_trace.jsonl")


def test_simulate_writes_runs_for_each_config(tmp_path, capsys):
    out, md = tmp_path / "run.json", tmp_path / "run.md"
    code = main(["simulate", "--trace", CONV, "--format", "azure", "--engines", "2", "--rate", "8",
                 "--max-requests", "150", "--config", "fcfs-rr:policy=fcfs,dispatch=round-robin",
                 "--config", "ours:policy=sjf-aging,dispatch=scored,max_running=64",
                 "--config", "sglang:prefill_order=policy,mixed_chunk=true,decode_reservation=true",
                 "--out", str(out), "--markdown", str(md), "--slo-ttft-ms", "500"])
    assert code == 0
    runs = load_runs(out)
    assert [r.label for r in runs] == ["fcfs-rr", "ours", "sglang"]
    assert (runs[0].config["prefill_order"], runs[2].config["prefill_order"]) == ("admission", "policy")
    assert runs[2].config["mixed_chunk"] is True and runs[2].config["decode_reservation"] is True
    for run in runs:
        assert run.summary["completed"] == 150 and run.summary["failed"] == 0
        assert run.summary["ttft_ms"]["p99"] >= run.summary["ttft_ms"]["p50"] > 0
        assert run.summary["slo_attainment"] is not None
    assert runs[1].config["max_running"] == 64
    assert "fcfs-rr" in md.read_text()


def test_simulate_mooncake_hits_the_prefix_cache(tmp_path):
    out = tmp_path / "run.json"
    assert main(["simulate", "--trace", MOONCAKE, "--format", "mooncake", "--engines", "2",
                 "--max-requests", "200", "--dispatch", "cache-aware", "--policy", "lpm",
                 "--out", str(out)]) in (0, 1)
    summary = load_runs(out)[0].summary
    assert summary["prefix_hit_tokens"] > 0


@pytest.mark.parametrize("argv, message", [
    (["--config", "a:policy=nope"], "policy 'nope'"),
    (["--config", "a:colour=red"], "unknown key"),
    (["--config", "a:prefill_order=fifo"], "expected one of admission, policy"),
    (["--decode-reservation"], "decode_reservation"),
    (["--prefill-order", "policy", "--learnt-headroom"], "learnt_headroom"),
    (["--config", "a:", "--config", "a:"], "unique"),
    (["--gpu-model", "tpu-v9"], "expected a preset"),
    (["--placement", "p.json"], "--routing-stats"),
])
def test_simulate_bad_input_exits_2(tmp_path, capsys, argv, message):
    out = tmp_path / "run.json"
    code = main(["simulate", "--trace", CONV, "--format", "azure", "--max-requests", "5",
                 "--out", str(out), *argv])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def _write_steps(path: Path, model: StructuralStepModel, rng: np.random.Generator, n: int = 80) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["prefill_tokens", "decode_seqs", "kv_context_tokens", "step_ms"])
        writer.writeheader()
        for _ in range(n):
            prefill, decode = int(rng.integers(0, 2048)), int(rng.integers(1, 64))
            batch = BatchShape(prefill_tokens=prefill, decode_seqs=decode,
                               kv_context_tokens=prefill + decode * 300)
            step_ms = model.step_seconds(batch) * 1e3 * (1 + 0.02 * rng.standard_normal())
            writer.writerow({"prefill_tokens": prefill, "decode_seqs": decode,
                             "kv_context_tokens": batch.kv_context_tokens, "step_ms": step_ms})


def test_calibrate_fits_and_writes_a_model_the_simulator_loads(tmp_path, capsys):
    truth = StructuralStepModel(
        ModelStructure(num_experts=8, top_k=2, dense_ridge_tokens=256, moe_ridge_tokens=1024),
        StepCoefficients(overhead_s=4e-3, per_token_s=1e-6, per_sequence_s=2e-4, dense_compute_s=2e-5,
                         kv_read_s=1e-8, expert_load_s=3e-4))
    steps, coef = tmp_path / "steps.csv", tmp_path / "coef.json"
    _write_steps(steps, truth, np.random.default_rng(0))
    assert main(["calibrate", "--steps", str(steps), "--num-experts", "8", "--top-k", "2",
                 "--search-ridge", "--holdout", "0.25", "--out", str(coef)]) == 0
    printed = capsys.readouterr().out
    assert "R^2" in printed and "held out: 20 steps" in printed
    fitted = load_model(coef)
    assert fitted.structure.dense_ridge_tokens == 256
    assert json.loads(coef.read_text())["fit"]["r2"] > 0.98
    out = tmp_path / "run.json"
    assert main(["simulate", "--trace", CONV, "--format", "azure", "--max-requests", "20",
                 "--gpu-model", str(coef), "--out", str(out)]) == 0


def test_step_rows_reject_bad_fields(tmp_path, capsys):
    bad = tmp_path / "steps.jsonl"
    bad.write_text('{"decode_seqs": 4, "step_ms": 10}\n{"decode_seqs": "x", "step_ms": 3}\n')
    with pytest.raises(ValueError, match=r"steps.jsonl:2: field 'decode_seqs'"):
        load_samples(bad)
    bad.write_text('{"decode_seqs": 4}\n')
    with pytest.raises(ValueError, match="step_ms"):
        load_samples(bad)
    assert main(["calibrate", "--steps", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "c.json")]) == 2
    assert not (tmp_path / "c.json").exists()


def test_calibrated_request_overhead_reaches_the_simulated_ttft(tmp_path, capsys):
    """Lone-request TTFT rows -> the file's request_overhead -> every simulated TTFT grows by it."""
    rows = [{"decode_seqs": b, "kv_context_tokens": 100 * b, "step_ms": 3 + 0.5 * b} for b in (1, 2, 4, 8, 16)]
    rows += [{"prefill_tokens": p, "request_overheads": 1, "step_ms": 3 + 0.01 * p + 60} for p in (16, 512, 1024)]
    steps, coef = tmp_path / "steps.json", tmp_path / "coef.json"
    steps.write_text(json.dumps(rows))
    assert main(["calibrate", "--steps", str(steps), "--out", str(coef)]) == 0
    assert "request_overhead_s 0.06" in capsys.readouterr().out
    assert json.loads(coef.read_text())["request_overhead"]["enqueue_s"] == pytest.approx(0.06)
    common = ["simulate", "--trace", CONV, "--format", "azure", "--max-requests", "30", "--gpu-model", str(coef)]
    assert main([*common, "--out", str(tmp_path / "with.json")]) == 0
    assert main([*common, "--request-overhead-ms", "0", "--out", str(tmp_path / "without.json")]) == 0
    with_overhead = load_runs(tmp_path / "with.json")[0]
    without = load_runs(tmp_path / "without.json")[0]
    assert with_overhead.config["request_overhead"]["enqueue_s"] == pytest.approx(0.06)
    for a, b in zip(with_overhead.requests, without.requests):
        assert a.ttft_ms == pytest.approx(b.ttft_ms + 60.0)
    assert main([*common, "--request-overhead-ms", "-1", "--out", str(tmp_path / "bad.json")]) == 2
    assert "--request-overhead-ms" in capsys.readouterr().err
