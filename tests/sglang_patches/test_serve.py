"""sglang_patches.serve: argument handling, the launch command, and the no-SGLang message."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from experiments.cli import main
from sglang_patches import serve
from sglang_patches.config import CONFIG_ENV, ENABLE_ENV, load_config


def test_option_value_reads_both_spellings_last_wins() -> None:
    argv = ["--dp-size", "2", "--model-path", "m", "--dp-size=3"]
    assert serve.option_value(argv, ("--dp-size",)) == "3"
    assert serve.option_value(argv, ("--load-balance-method",)) is None


def test_launch_adds_total_tokens_and_placement(tmp_path: Path) -> None:
    placement = tmp_path / "p.json"
    placement.write_text("{}")
    config_path = tmp_path / "m.toml"
    config_path.write_text(f'[experts]\nplacement_file = "{placement}"\n')
    argv, env, notes = serve.build_launch(load_config(config_path), str(config_path),
                                          ["--model-path", "m", "--data-parallel-size", "2"],
                                          python="/py")
    assert argv == ["/py", "-m", "sglang.launch_server", "--model-path", "m",
                    "--data-parallel-size", "2", "--init-expert-location", str(placement),
                    "--load-balance-method", "total_tokens", "--enable-mixed-chunk"]
    assert env == {ENABLE_ENV: "1", CONFIG_ENV: str(config_path.resolve())} and notes == []


def test_launch_keeps_user_choices_and_says_which_layer_stays_stock() -> None:
    argv, env, notes = serve.build_launch(load_config(None), None,
                                          ["--dp-size", "2", "--load-balance-method", "round_robin",
                                           "--schedule-policy", "lpm"], python="/py")
    assert argv[3:] == ["--dp-size", "2", "--load-balance-method", "round_robin",
                        "--schedule-policy", "lpm", "--enable-mixed-chunk"]
    assert env == {ENABLE_ENV: "1"}
    assert len(notes) == 2 and "round_robin" in notes[0] and "lpm" in notes[1]


def test_single_rank_gets_no_load_balance_flag() -> None:
    argv, _, _ = serve.build_launch(load_config(None), None, ["--model-path", "m"], python="/py")
    assert argv == ["/py", "-m", "sglang.launch_server", "--model-path", "m", "--enable-mixed-chunk"]


def test_mixed_chunk_is_added_once_and_can_be_left_stock(tmp_path: Path) -> None:
    argv, _, _ = serve.build_launch(load_config(None), None, ["--enable-mixed-chunk"], python="/py")
    assert argv[3:] == ["--enable-mixed-chunk"]
    config_path = tmp_path / "m.toml"
    config_path.write_text("[launch]\nmixed_chunk = false\n")
    argv, _, _ = serve.build_launch(load_config(config_path), str(config_path), ["--model-path", "m"],
                                    python="/py")
    assert argv[3:] == ["--model-path", "m"]
    config_path.write_text('[launch]\nmixed_chunk = "yes"\n')
    with pytest.raises(ValueError, match="launch.mixed_chunk: expected true or false"):
        load_config(config_path)


def test_conflicting_placement_is_refused(tmp_path: Path) -> None:
    placement = tmp_path / "p.json"
    placement.write_text("{}")
    config_path = tmp_path / "m.toml"
    config_path.write_text(f'[experts]\nplacement_file = "{placement}"\n')
    with pytest.raises(ValueError, match="conflicts with experts.placement_file"):
        serve.build_launch(load_config(config_path), str(config_path),
                           ["--init-expert-location", "other.json"])


def test_bad_dp_size_is_refused() -> None:
    with pytest.raises(ValueError, match="--dp-size: expected an integer, got 'two'"):
        serve.build_launch(load_config(None), None, ["--dp-size", "two"])
    with pytest.raises(ValueError, match="--attn-dp-size: expected an integer >= 1, got 0"):
        serve.build_launch(load_config(None), None, ["--attn-dp-size", "0"])


@pytest.mark.parametrize(("flags", "ranks"), [
    ([], 1),
    (["--attn-dp-size", "4"], 4),
    (["--attention-data-parallel-size=2"], 2),
    (["--dp-size", "2", "--attn-dp-size", "4"], 8),
    (["--data-parallel-size", "3", "--attn-dp-size", "1"], 3),
])
def test_dp_ranks_multiplies_dp_and_attention_dp(flags: list[str], ranks: int) -> None:
    assert serve.dp_ranks(flags) == ranks


def test_attention_dp_alone_gets_the_dispatch_method() -> None:
    argv, _, _ = serve.build_launch(load_config(None), None, ["--tp-size", "8", "--attn-dp-size", "8"],
                                    python="/py")
    assert argv[3:] == ["--tp-size", "8", "--attn-dp-size", "8",
                        "--load-balance-method", "total_tokens", "--enable-mixed-chunk"]


def test_preemption_adds_priority_scheduling_once(tmp_path: Path) -> None:
    config_path = tmp_path / "m.toml"
    config_path.write_text("[request.preemption]\nenabled = true\n")
    config = load_config(config_path)
    argv, _, _ = serve.build_launch(config, str(config_path), ["--model-path", "m"], python="/py")
    assert argv[3:] == ["--model-path", "m", "--enable-priority-scheduling", "--enable-mixed-chunk"]
    argv, _, _ = serve.build_launch(config, str(config_path),
                                    ["--enable-priority-scheduling"], python="/py")
    assert argv[3:] == ["--enable-priority-scheduling", "--enable-mixed-chunk"]
    with pytest.raises(ValueError, match="--disable-priority-preemption conflicts"):
        serve.build_launch(config, str(config_path), ["--disable-priority-preemption"])
    argv, _, _ = serve.build_launch(load_config(None), None, ["--model-path", "m"], python="/py")
    assert "--enable-priority-scheduling" not in argv  # off by default


def test_cli_dry_run_passes_unknown_args_through(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--dry-run", "--model-path", "models/x", "--dp-size", "2",
                 "--dry-runner", "kept"])  # no abbreviation: --dry-runner is SGLang's business
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith(f"{ENABLE_ENV}=1 ")
    assert (f"{sys.executable} -m sglang.launch_server --model-path models/x --dp-size 2 "
            f"--dry-runner kept --load-balance-method total_tokens") in out


def test_cli_bad_config_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[dispatch]\nweights = 1\n")
    assert main(["serve", "--moesched-config", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"moesched serve: error: {path}: unknown key 'dispatch.weights'; expected one of "
                   "enabled, policy, block_tokens, options")


def test_without_sglang_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "sglang" else real_find_spec(name, *a))
    monkeypatch.setattr(serve.os, "execve", lambda *a: pytest.fail("must not exec"))
    assert main(["serve", "--model-path", "m"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SGLang is not installed" in err[0]
    assert "make engines" in err[0] and "pip install 'moesched[sglang]'" in err[0]


def test_excluding_whitelist_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("sglang")  # the other checks pass only where SGLang is installed
    with pytest.raises(ValueError, match="SGLANG_PLUGINS=other excludes the 'moesched' plugin"):
        serve.check_sglang({"SGLANG_PLUGINS": "other"})


def test_run_execs_sglang_with_the_switch_on(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(serve, "check_sglang", lambda: None)
    monkeypatch.setattr(serve.os, "execve", lambda path, argv, env: calls.append((path, argv, env)))
    assert main(["serve", "--model-path", "m"]) == 0
    (path, argv, env), = calls
    assert path == sys.executable and argv[1:] == ["-m", "sglang.launch_server", "--model-path", "m",
                                                   "--enable-mixed-chunk"]
    assert env[ENABLE_ENV] == "1" and CONFIG_ENV not in env
