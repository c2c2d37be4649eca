"""sglang_patches.config: defaults that work, one-line errors naming the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from sglang_patches.config import (CONFIG_ENV, ENABLE_ENV, MoeschedConfig, PreemptionConfig,
                                   config_from_env, load_config, parse_config)


def test_defaults_are_valid_and_name_real_policies() -> None:
    config = load_config(None)
    assert config == MoeschedConfig()
    assert config.request.policy == "sjf-aging" and config.dispatch.policy == "scored"
    assert config.dispatch.dispatcher_options() == {"block_tokens": config.dispatch.block_tokens}


def test_full_file_round_trips(tmp_path: Path) -> None:
    placement = tmp_path / "placement.json"
    placement.write_text('{"physical_to_logical_map": [[0, 1]]}')
    path = tmp_path / "moesched.toml"
    path.write_text(
        '[request]\npolicy = "sjf-aging"\nprefix_match_max = 16\n'
        '[request.options]\naging_rate = 0.25\nmax_wait_s = 5.0\n'
        '[dispatch]\npolicy = "round-robin"\nblock_tokens = 32\n'
        '[experts]\nplacement_file = "placement.json"\n'
        '[log]\nfirst_orderings = 2\nsummary_interval_s = 0\n')
    config = load_config(path)
    assert config.request.prefix_match_max == 16
    assert dict(config.request.options) == {"aging_rate": 0.25, "max_wait_s": 5.0}
    assert config.dispatch.dispatcher_options() == {}  # only "scored" takes block_tokens
    assert config.experts.placement_file == str(placement.resolve())  # relative to the file
    assert config.log.summary_interval_s == 0.0 and config.source == str(path)


@pytest.mark.parametrize("text, message", [
    ('[request]\npolcy = "fcfs"', "unknown key 'request.polcy'; expected one of"),
    ("[requests]", "unknown section [requests]; expected one of [request]"),
    ("[request]\nprefix_match_max = -1", "request.prefix_match_max: expected an integer >= 0, got -1"),
    ('[request]\nenabled = "yes"', "request.enabled: expected true or false, got 'yes'"),
    ('[request]\npolicy = "sjf"', "request.policy/options: unknown request policy 'sjf'"),
    ("[request.options]\nno_such_option = 1", "request policy 'sjf-aging': bad options"),
    ("[dispatch]\nblock_tokens = 0", "dispatch.block_tokens: expected an integer >= 1, got 0"),
    ('[dispatch]\npolicy = "fastest"', "dispatcher 'fastest': expected one of"),
    ("[log]\nsummary_interval_s = -2", "log.summary_interval_s: expected a number of seconds >= 0"),
    ('[experts]\nplacement_file = "/no/such/placement.json"', "experts.placement_file: expected an existing file"),
    ("[request.preemption]\nsize_ratio = 1", "request.preemption: size_ratio: expected a number > 1"),
    ("[request.preemption]\nratio = 4", "request.preemption: unknown key 'ratio'; expected one of"),
    ('[request]\npolicy = "fcfs"\n[request.preemption]\nenabled = true',
     "request.preemption.enabled needs a policy with a job-size predictor (sjf-aging)"),
    ("[dp_controller]\nblock_when_idle = 1", "dp_controller.block_when_idle: expected true or false"),
    ("[dp_controller]\nlate_binding = true\n[dispatch]\nenabled = false",
     "dp_controller.late_binding: holds the requests the plugin's dispatcher places; expected [dispatch] enabled = true"),
    ("[dp_controller]\nlate_binding = true\n[dp_controller.hold]\nmax_in_flight = 0",
     "dp_controller.hold.max_in_flight: expected an integer >= 1, got 0"),
    ("[dp_controller]\nlate_binding = true\n[dp_controller.hold]\nslots = 4",
     "dp_controller.hold.slots: unknown key; expected one of max_in_flight, tick_s, step_model"),
    ("[dp_controller]\nlate_binding = true\n[dp_controller.rebalance]\nperiod_s = 0",
     "dp_controller.rebalance.period_s: expected > 0, got 0"),
    ('[dp_controller]\nlate_binding = true\n[dp_controller.hold]\nstep_model = "nope"',
     "dp_controller.hold.step_model: gpu model 'nope': expected a preset"),
    ('[dp_controller]\nhold_order = "sjf"', "dp_controller.hold_order: expected one of 'request', 'fcfs'"),
    ("[dp_controller]\nlate_binding = true\n[request]\nenabled = false",
     "dp_controller.hold_order: \"request\" orders held requests by the [request] policy, which is off"),
    ("[headroom]\nquantile = 0", "headroom.quantile: expected a number in (0, 1], got 0"),
    ("[headroom]\nfloor_tokens = 5000", "headroom: floor_tokens, ceiling_tokens: expected 1 <= floor <= ceiling"),
    ("[request]\nfoo =", "not valid TOML"),
    ("request = 3", "[request] must be a table"),
])
def test_bad_input_is_one_line_naming_key(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_config(text, "cfg.toml")
    text_of_error = str(info.value)
    assert text_of_error.startswith("cfg.toml: ") and message in text_of_error
    assert "\n" not in text_of_error


def test_dp_controller_blocks_by_default_and_can_spin_as_stock() -> None:
    assert load_config(None).dp_controller.block_when_idle
    assert not parse_config("[dp_controller]\nblock_when_idle = false", "cfg.toml").dp_controller.block_when_idle


def test_late_binding_is_off_by_default_and_reads_the_router_tables(tmp_path: Path) -> None:
    assert not load_config(None).dp_controller.late_binding
    model = tmp_path / "cpu.coef.json"
    model.write_text(Path("results/budget_real/sglang_cpu_base.coef.json").read_text())
    path = tmp_path / "moesched.toml"
    path.write_text('[dp_controller]\nlate_binding = true\n'
                    '[dp_controller.hold]\nmax_in_flight = 6\nstep_model = "cpu.coef.json"\n'
                    '[dp_controller.rebalance]\nmax_moves_per_s = 20.0\n')
    late = load_config(path).dp_controller.late_binding_config()
    assert late.hold.max_in_flight == 6 and late.rebalance.max_moves_per_s == 20.0
    assert late.hold.step_model == str(model.resolve())  # relative to the config file


def test_preemption_is_off_by_default_and_parsed() -> None:
    assert not load_config(None).request.preemption.enabled
    config = parse_config("[request.preemption]\nenabled = true\nsize_ratio = 3\n"
                          "max_per_request = 2\noverdue = false\n", "cfg.toml")
    assert config.request.preemption == PreemptionConfig(True, 3.0, 2, False)


def test_unreadable_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing.toml: cannot read the moesched config"):
        load_config(tmp_path / "missing.toml")


def test_switch_off_unless_enable_is_exactly_one(tmp_path: Path) -> None:
    assert config_from_env({}) is None
    assert config_from_env({ENABLE_ENV: "0"}) is None
    assert config_from_env({ENABLE_ENV: "1"}) == MoeschedConfig()
    path = tmp_path / "c.toml"
    path.write_text("[dispatch]\nenabled = false\n")
    assert config_from_env({ENABLE_ENV: "1", CONFIG_ENV: str(path)}).dispatch.enabled is False


@pytest.mark.parametrize("name", ["moesched.toml", "moesched-cpu-demo.toml"])
def test_shipped_configs_are_valid(name: str) -> None:
    path = Path(__file__).resolve().parents[2] / "configs" / name
    assert load_config(path).source == str(path)


def test_experts_solver_and_transitions_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="experts.solver: .*no_such_knob"):
        parse_config("[experts.solver]\nno_such_knob = 1", "cfg.toml")
    with pytest.raises(ValueError, match="experts.transitions_file: expected an existing file"):
        parse_config('[experts]\ntransitions_file = "/nope.npz"', "cfg.toml")
