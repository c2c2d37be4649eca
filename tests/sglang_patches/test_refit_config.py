"""``[refit]`` in the moesched config: off by default, a loadable base model, valid options; the
token budget priced by the same online model (``budget.step_model = "refit"``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from perf_model.batch import BatchShape
from perf_model.model_file import save_model
from perf_model.presets import preset_model
from request_sched.token_budget import SloTokenBudget
from sglang_patches.config import REFIT_MODEL, load_config, parse_config
from sglang_patches.plugin import ProcessStepModel

PRESET = "qwen3-30b-a3b-h100"


def test_refit_is_off_by_default() -> None:
    assert load_config(None).refit.enabled is False


def test_refit_with_a_preset_and_options() -> None:
    config = parse_config(f'[refit]\nenabled = true\nbase_model = "{PRESET}"\nlog_interval_steps = 50\n'
                          '[refit.options]\nscale_bounds = [0.1, 10.0]\nforgetting = 0.9\n')
    assert config.refit.base_model == PRESET and config.refit.log_interval_steps == 50
    assert config.refit.refit_options() == {"scale_bounds": (0.1, 10.0), "forgetting": 0.9}


def test_relative_model_and_steps_file_are_relative_to_the_config(tmp_path: Path) -> None:
    save_model(tmp_path / "cpu.json", preset_model(PRESET))
    path = tmp_path / "moesched.toml"
    path.write_text('[refit]\nenabled = true\nbase_model = "cpu.json"\nsteps_file = "steps.jsonl"\n')
    refit = load_config(path).refit
    assert refit.base_model == str(tmp_path.resolve() / "cpu.json")
    assert refit.steps_file == str(tmp_path.resolve() / "steps.jsonl")


@pytest.mark.parametrize("text, message", [
    ("[refit]\nenabled = true", "refit.base_model: expected a preset name or a coefficient file"),
    ('[refit]\nenabled = true\nbase_model = "nope.json"', "refit.base_model: gpu model 'nope.json'"),
    (f'[refit]\nenabled = true\nbase_model = "{PRESET}"\n[refit.options]\nwindow = 2',
     "refit.options: online refit config: invalid window"),
    (f'[refit]\nenabled = true\nbase_model = "{PRESET}"\n[refit.options]\nwindw = 64',
     "refit.options:"),
    ("[refit]\nlog_interval_steps = 0", "refit.log_interval_steps: expected an integer >= 1"),
])
def test_bad_refit_sections_fail_in_one_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=None) as error:
        parse_config(text, source="cfg.toml")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_budget_on_the_refit_model_needs_refit() -> None:
    with pytest.raises(ValueError, match='budget.step_model: "refit" prices steps with the online model of'):
        parse_config('[budget]\nenabled = true\nstep_model = "refit"\n', source="cfg.toml")
    config = parse_config(f'[budget]\nenabled = true\nstep_model = "refit"\n'
                          f'[refit]\nenabled = true\nbase_model = "{PRESET}"\n')
    assert config.budget.step_model == REFIT_MODEL


def test_budget_follows_the_steps_the_refit_model_observes() -> None:
    """One model per process: what the step timing hook feeds it, the budget prices with."""
    online = ProcessStepModel(parse_config(f'[refit]\nenabled = true\nbase_model = "{PRESET}"\n').refit)
    rule = SloTokenBudget(online, 0.030, max_budget=65536, min_budget=0)
    before = rule.budget(64, 64_000)
    assert online.get() is online.get()
    for i in range(400):  # the engine runs 1.5x slower than the base model says
        batch = BatchShape(prefill_tokens=64 * (i % 8), decode_seqs=32 + i % 32, kv_context_tokens=40_000)
        online.get().observe(batch, 1.5 * preset_model(PRESET).step_seconds(batch))
    assert online.step_seconds(BatchShape(decode_seqs=64, kv_context_tokens=64_000)) == pytest.approx(
        1.5 * preset_model(PRESET).step_seconds(BatchShape(decode_seqs=64, kv_context_tokens=64_000)), rel=0.1)
    assert rule.budget(64, 64_000) < before


def test_budget_real_variants_differ_only_in_the_budget() -> None:
    from experiments.benchmarks.budget_real import plugin_config, step_kinds

    with_budget, without = (parse_config(plugin_config(PRESET, slo, Path("steps.jsonl"))) for slo in (30.0, None))
    assert with_budget.refit.steps_file == "steps.jsonl"
    kinds = step_kinds([{"prefill_tokens": 0, "decode_seqs": 4, "step_s": 0.010, "predicted_s": 0.012},
                        {"prefill_tokens": 64, "decode_seqs": 4, "step_s": 0.030, "predicted_s": 0.020},
                        {"prefill_tokens": 64, "decode_seqs": 2, "step_s": 0.050, "predicted_s": 0.040},
                        {"prefill_tokens": 512, "decode_seqs": 0, "step_s": 0.020, "predicted_s": 0.025}])
    assert kinds == pytest.approx({
        "steps_decode": 1.0, "steps_prefill": 1.0, "steps_mixed": 2.0,
        "step_decode_ms": 10.0, "step_prefill_ms": 20.0, "step_mixed_ms": 40.0,
        "step_decode_predicted_ms": 12.0, "step_prefill_predicted_ms": 25.0, "step_mixed_predicted_ms": 30.0})
    assert with_budget.budget.enabled and with_budget.budget.step_model == REFIT_MODEL
    assert with_budget.budget.tpot_slo_ms == 30.0 and not without.budget.enabled
    assert with_budget.refit == without.refit and with_budget.refit.enabled
    assert not with_budget.request.enabled and not with_budget.dispatch.enabled
