"""Config validation: every bad input is a ValueError naming the file and the dotted key."""

from pathlib import Path

import pytest

from engine_dispatch.config import ScoredConfig, config_from_dict, load_config
from engine_dispatch.factory import create_dispatcher

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("data, message", [
    ({"dispatch": {"picker": "best"}}, "dispatch.picker"),
    ({"dispatch": {"colour": 1}}, "dispatch.colour: unknown key"),
    ({"dispatch": {"top_k": "2"}}, "dispatch.top_k: expected an integer"),
    ({"dispatch": {"seed": True}}, "dispatch.seed: expected an integer"),
    ({"kv_use": {"saturation": 1.5}}, "kv_use.saturation: expected a number in (0, 1]"),
    ({"weights": {"magic": 1.0}}, "weights.magic: expected a scorer name"),
    ({"weights": {"kv_use": -1}}, "weights.kv_use: expected a number >= 0"),
    ({"weights": {"kv_use": 0}}, "weights: expected at least one weight > 0"),
    ({"hybrid": {"metric": "gpu"}}, "hybrid.metric"),
    ({"hybrid": {"below": {"nope": 1}}}, "hybrid.below.nope"),
    ({"extra": {}}, "extra: unknown table"),
    ({"stickiness": 3}, "stickiness: expected a table"),
])
def test_bad_values_name_the_key(data, message):
    with pytest.raises(ValueError) as caught:
        config_from_dict(data)
    assert message in str(caught.value)


def test_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[kv_use]\nsaturation = 2\n")
    with pytest.raises(ValueError, match=r"bad\.toml: kv_use\.saturation"):
        load_config(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("[dispatch\n")
    with pytest.raises(ValueError, match=r"broken\.toml: not valid TOML"):
        load_config(broken)
    with pytest.raises(OSError):
        load_config(tmp_path / "missing.toml")


def test_overrides_replace_whole_tables(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[weights]\nprefix_load = 1.0\nkv_use = 0.5\n[kv_use]\nsaturation = 0.8\n")
    config = load_config(path, {"weights": {"least_load": 2.0}})
    assert config.weights == {"least_load": 2.0} and config.kv_use.saturation == 0.8
    with pytest.raises(ValueError, match=r"c\.toml: weights\.least_load"):
        load_config(path, {"weights": {"least_load": -1}})


def test_shipped_configs_load_and_default_matches_builtin():
    # the router's file: the built-in weights plus cache affinity (docs/engine_dispatch.md)
    assert load_config(REPO / "configs" / "dispatch.toml").weights == {**ScoredConfig().weights,
                                                                       "cache_affinity": 0.5}
    gaps = load_config(REPO / "configs" / "dispatch_gaps.toml")
    assert gaps.hybrid is not None and gaps.hybrid.above["predicted_load"] > 0


def test_predicted_load_without_model_is_refused():
    with pytest.raises(ValueError, match="step-time model"):
        create_dispatcher("scored", 2, config=config_from_dict({"weights": {"predicted_load": 1}}))


def test_factory_rejects_unknown_names_and_options():
    with pytest.raises(ValueError, match="expected one of"):
        create_dispatcher("fastest", 2)
    with pytest.raises(ValueError, match="bad options"):
        create_dispatcher("round-robin", 2, colour="red")
    with pytest.raises(ValueError, match="num_engines"):
        create_dispatcher("round-robin", 0)
