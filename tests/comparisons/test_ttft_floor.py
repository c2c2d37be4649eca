"""The TTFT floor estimate: its decode step is a fixed point, its parts add up, and a summary
without the fields it needs is refused with the field's name."""

from __future__ import annotations

import json

import pytest

from experiments.comparisons import ttft_floor
from experiments.comparisons.placements import anchored_model
from perf_model.batch import BatchShape, MoeFactors
from perf_model.presets import preset_model

MOE = MoeFactors(imbalance=1.0, remote_fraction=0.875)


def _summary(rate: float = 40.0) -> dict:
    return {"comparison": {"cluster": "ep8", "engines": 4, "placements": {
        "trivial": {"imbalance": 1.66, "remote_fraction": {"deepep-low-latency": 0.875}},
        "solver": {"imbalance": 1.1, "remote_fraction": {"deepep-low-latency": 0.875}}}},
        "runs": [{"label": "azure-conv/vllm", "config": {"workload": {"requests": 60, "rate_rps": rate}},
                  "summary": {"ttft_ms": {"mean": 100.0}}},
                 {"label": "azure-conv/moesched", "config": {"workload": {"requests": 60, "rate_rps": rate}},
                  "summary": {"ttft_ms": {"mean": 50.0}}}]}


def test_decode_step_is_a_fixed_point_of_the_output_rate():
    model = preset_model("qwen3-235b-a22b-8xh100-ep8")
    step, decodes = ttft_floor.decode_fixed_point_s(model, MOE, rate_per_engine=10.0, mean_input=1000.0,
                                                    mean_output=250.0)
    assert decodes == pytest.approx(10.0 * 250.0 * step, rel=0.02)
    again = model.step_seconds(BatchShape(decode_seqs=round(decodes), kv_context_tokens=int(decodes * 1125)), MOE)
    assert again == pytest.approx(step, rel=0.01)


def test_floor_is_prompt_alone_plus_half_a_decode_step_and_grows_with_rate():
    low, high = ttft_floor.floors(_summary(20.0), "s.json")[0], ttft_floor.floors(_summary(80.0), "s.json")[0]
    assert [low["trace"], len(ttft_floor.floors(_summary(), "s.json"))] == ["azure-conv", 1]  # vllm runs only
    assert low["floor_ms"] == pytest.approx(low["prefill_alone_ms"] + low["decode_step_ms"] / 2)
    assert low["floor_over_baseline"] == pytest.approx(low["floor_ms"] / 100.0)
    assert high["decode_step_ms"] > low["decode_step_ms"] and high["prefill_alone_ms"] == low["prefill_alone_ms"]
    model = anchored_model(preset_model("qwen3-235b-a22b-8xh100-ep8"), MoeFactors(imbalance=1.66))
    assert low["prefill_alone_ms"] < 1e3 * model.step_seconds(BatchShape(prefill_tokens=2000), MoeFactors(1.66, 0.875))


def test_summary_without_a_needed_field_is_refused(tmp_path, capsys):
    bad = _summary()
    del bad["comparison"]["placements"]["solver"]["remote_fraction"]
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(bad))
    out = tmp_path / "floor.json"
    assert ttft_floor.main(["--summary", str(path), "--out", str(out)]) == 2
    assert "remote_fraction.deepep-low-latency" in capsys.readouterr().err and not out.exists()
