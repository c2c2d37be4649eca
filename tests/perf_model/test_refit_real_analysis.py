"""The analysis of experiments/benchmarks/refit_real.py on synthetic step rows (no engine)."""

from __future__ import annotations

import pytest

from experiments.benchmarks.refit_real import (_back_under, analyse, block_error, mark_freezes,
                                               steps_until_block_under)
from perf_model.presets import preset_model


def rows_of(measured: list[float], predicted: list[float], start: float = 0.0) -> list[dict]:
    rows, t = [], start
    for m, p in zip(measured, predicted):
        t += m
        rows.append({"end_s": t, "step_s": m, "predicted_s": p, "prefill_tokens": 0,
                     "cached_prefill_tokens": 0, "decode_seqs": 4, "kv_context_tokens": 400,
                     "prefill_attention_pairs": 0.0, "mape": abs(p - m) / m, "scale": 1.0,
                     "drifts": 0, "hook_s": 1e-5})
    return rows


def test_block_error_is_the_error_of_the_summed_duration():
    rows = rows_of([1.0, 3.0], [2.0, 2.0])  # per step 100% and 33%, summed 0%
    assert block_error(rows) == 0.0


def test_steps_until_consecutive_blocks_are_within_bound():
    measured = [1.0] * 40
    predicted = [2.0] * 10 + [1.05] * 30
    rows = rows_of(measured, predicted)
    assert steps_until_block_under(rows, 4) == 10
    assert steps_until_block_under(rows, 4, blocks=4) == 10
    assert steps_until_block_under(rows_of([1.0] * 8, [2.0] * 8), 4) is None


def test_back_under_counts_from_the_peak():
    assert _back_under([0.05, 0.5, 0.3, 0.08, 0.2, 0.05]) == 3
    assert _back_under([0.5, 0.4]) is None


def test_analyse_finds_the_onset_and_the_recovery():
    base = preset_model("qwen3-30b-a3b-h100")
    fast, slow = 0.005, 0.3
    measured = [fast] * 200 + [fast] * 5 + [slow] * 60 + [fast] * 100
    # a model that catches up after 10 slow steps and 8 fast ones
    predicted = [fast] * 205 + [fast] * 10 + [slow] * 50 + [slow] * 8 + [fast] * 92
    rows = rows_of(measured, predicted)
    mark_freezes(rows, [])
    t_on = rows[199]["end_s"] + 1e-9
    t_off = rows[264]["end_s"] + 1e-9
    result = analyse(rows, 0.0, t_on, t_off, base, warmup_s=0.0, window=4)
    on, off = result["load_on"], result["load_off"]
    assert on["onset_delay_steps"] == 5 and on["onset_delay_s"] == pytest.approx(5 * fast)
    assert on["steps_until_block_under_10pct"] == 10
    assert off["onset_delay_steps"] == 0 and off["steps_until_block_under_10pct"] == 8
    assert result["phases"]["loaded"]["steps"] == 60
    assert result["phases"]["baseline"]["online_blocks_under_10pct"] == 1.0
