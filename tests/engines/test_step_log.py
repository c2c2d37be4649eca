"""The step-log helpers and the benchmarks that read step logs (sim_fidelity --step-log, engine_drift)."""

import json
from pathlib import Path

import pytest

from experiments.benchmarks.engine_drift import decode_ratio
from experiments.fidelity.calibration import calibrated_model, held_out_fits, lone_request_overhead_s
from experiments.engines.step_log import calibration_steps, read_step_lines, write_step_log_config
from experiments.metrics.runs import RunResult
from perf_model.batch import BatchShape
from perf_model.model_file import load_request_overhead
from perf_model.samples_file import sample_from_row
from sglang_patches.config import load_config


def _line(wall_s: float, end_s: float, step_s: float, prefill: int = 0, decode: int = 0) -> str:
    return json.dumps({"wall_s": wall_s, "end_s": end_s, "pid": 7, "step_s": step_s, "predicted_s": 0.01,
                       "prefill_tokens": prefill, "cached_prefill_tokens": 0, "decode_seqs": decode,
                       "kv_context_tokens": prefill + 100 * decode, "prefill_attention_pairs": 0.0,
                       "scale": 1.0, "mape": 0.1, "drifts": 0, "hook_s": 1e-4})


def test_config_turns_on_only_step_timing(tmp_path):
    steps = tmp_path / "steps.jsonl"
    path = write_step_log_config(tmp_path / "m.toml", "qwen3-30b-a3b-h100", steps, (0.02, 100.0))
    config = load_config(path)
    assert not config.request.enabled and not config.dispatch.enabled
    assert config.refit.enabled and config.refit.steps_file == str(steps)
    assert config.refit.refit_options()["scale_bounds"] == (0.02, 100.0)
    assert load_config(write_step_log_config(tmp_path / "n.toml", "qwen3-30b-a3b-h100", steps)).refit.options == {}


def test_only_steps_inside_the_windows_become_fit_rows(tmp_path):
    path = tmp_path / "steps.jsonl"
    path.write_text("\n".join([_line(10.5, 3.0, 0.02, prefill=512), _line(9.0, 1.0, 0.005, decode=4),
                               _line(12.0, 5.0, 0.006, decode=2), _line(20.5, 9.0, 0.007, decode=3)]) + "\n")
    assert [row["end_s"] for row in read_step_lines(path)] == [1.0, 3.0, 5.0, 9.0]
    rows = calibration_steps(read_step_lines(path), [(2.0, 5.0), (8.0, 9.5)])
    assert [row["step_s"] for row in rows] == [0.02, 0.006, 0.007]
    samples = [sample_from_row(row, "row") for row in rows]  # what moesched calibrate accepts
    assert [s.batch.prefill_tokens for s in samples] == [512, 0, 0]
    assert [s.batch.decode_seqs for s in samples] == [0, 2, 3]


def test_a_broken_line_names_file_and_line(tmp_path):
    path = tmp_path / "steps.jsonl"
    path.write_text(_line(1.0, 1.0, 0.01) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"steps.jsonl:2: expected one JSON object per line"):
        read_step_lines(path)


def test_request_overhead_is_lone_ttft_minus_its_logged_prefill_step():
    points = [([0.013, 0.015], [0.004, 0.006]), ([0.021], [0.017, 0.019])]  # 9 ms and 3 ms
    assert lone_request_overhead_s(points) == pytest.approx(0.006)
    assert lone_request_overhead_s([([0.010], [0.020])]) == 0.0  # never negative
    with pytest.raises(ValueError, match="every prefill sweep point"):
        lone_request_overhead_s([([0.010], [])])


def test_drift_compares_only_the_replays_decode_steps_with_the_model():
    fidelity = Path(__file__).parents[2] / "results/sim_fidelity/sglang_fresh_step_log.json"
    model = calibrated_model(fidelity)  # a sim_fidelity result: the coefficients file inside it
    steps = [json.loads(_line(0.0, t, 0.010, decode=4)) for t in (10.2, 10.4, 10.6)]
    steps += [json.loads(_line(0.0, 10.5, 0.030, prefill=512)), json.loads(_line(0.0, 99.0, 0.010, decode=4))]
    run = RunResult("real", {"round_start_monotonic_s": [10.0]}, {"duration_s": 1.0}, [])
    ratio = decode_ratio(run, steps, model)
    assert ratio["decode_steps"] == 3 and ratio["measured_s"] == pytest.approx(0.030)
    one = model.step_seconds(BatchShape(decode_seqs=4, kv_context_tokens=400))
    assert ratio["predicted_over_measured"] == pytest.approx(3 * one / 0.030)


def test_each_round_is_predicted_by_a_fit_on_the_other_rounds_replay_steps(tmp_path):
    """Round 0's steps are twice as slow as round 1's: round 0's held-out model (fitted on round 1)
    is the fast one, and the reverse; steps outside every replay window are never used."""
    lines = []
    for start, factor in ((10.0, 2.0), (20.0, 1.0)):
        for i, decode in enumerate(range(1, 17)):
            lines.append(_line(0.0, start + 0.01 * (i + 1), factor * (0.002 + 0.0005 * decode), decode=decode))
    lines.append(_line(0.0, 50.0, 5.0, decode=8))  # no replay ran then: a sweep or idle outlier
    steps = tmp_path / "steps.jsonl"
    steps.write_text("\n".join(lines) + "\n")
    rounds = {3.0: [RunResult("real", {"round_start_monotonic_s": [start]}, {"duration_s": 0.5}, [])
                    for start in (10.0, 20.0)]}
    coefs = held_out_fits(read_step_lines(steps), rounds, tmp_path, "t", 0.004)
    held_out_0, held_out_1 = (calibrated_model(c) for c in coefs)
    shape = BatchShape(decode_seqs=8, kv_context_tokens=800)
    assert held_out_0.step_seconds(shape) == pytest.approx(0.006, rel=0.05)   # round 1's speed
    assert held_out_1.step_seconds(shape) == pytest.approx(0.012, rel=0.05)   # round 0's speed
    assert load_request_overhead(coefs[0]).total_s == pytest.approx(0.004)
    with pytest.raises(ValueError, match=">= 2 rounds"):
        held_out_fits(read_step_lines(steps), {3.0: rounds[3.0][:1]}, tmp_path, "t", 0.004)
