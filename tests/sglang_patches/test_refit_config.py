"""``[refit]`` in the moesched config: off by default, a loadable base model, valid options."""

from __future__ import annotations

from pathlib import Path

import pytest

from perf_model.model_file import save_model
from perf_model.presets import preset_model
from sglang_patches.config import load_config, parse_config

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
