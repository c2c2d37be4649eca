"""Every command of the GPU recipe parses with the real parsers on the CPU.

moesched lines: our own argparse (unmarked, fast). SGLang lines: SGLang 0.5.23's ``ServerArgs``
parser (``-m sglang``, ``.venvs/sglang``); only the parser runs, not ``ServerArgs.__post_init__``,
which would resolve the model's config from the Hub. vLLM lines: vLLM's ``make_arg_parser``
(``-m integration``, ``.venvs/vllm``; see ``vllm_check.py``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import subprocess
from pathlib import Path

import pytest

from experiments.cli import SUBCOMMANDS
from experiments.gpu_recipe.recipe import (GPUS, MOESCHED_CONFIG, PLACEMENT, REDUNDANT_EXPERTS, ROUNDS, all_steps,
                                           recipe, server_order, shell_line, shell_script)
from sglang_patches.config import load_config
from sglang_patches.serve import build_launch

ROOT = Path(__file__).resolve().parents[2]
HTTP_ROUTES = ("/start_expert_distribution_record", "/stop_expert_distribution_record",
               "/dump_expert_distribution_record")


def _moesched_parse(step) -> argparse.Namespace:
    """Parse like ``experiments.cli.main``: the subcommand's own add_arguments; serve keeps extras."""
    name = step.argv[1]
    parser = argparse.ArgumentParser(prog=f"moesched {name}", exit_on_error=False)
    importlib.import_module(SUBCOMMANDS[name][0]).add_arguments(parser)
    if name == "serve":
        args, passthrough = parser.parse_known_args(step.args())
        args.sglang_args = passthrough
        return args
    return parser.parse_args(step.args())


def _value(argv, flag: str) -> str:
    return argv[list(argv).index(flag) + 1]


def _sglang_launch_args() -> list[list[str]]:
    """What ``sglang.launch_server`` receives from each distinct SGLang launch (``moesched serve``
    expanded); the servers restart every round with the same arguments."""
    out: list[list[str]] = []
    for step in all_steps():
        if step.tool == "sglang":
            argv = step.args()
        elif step.argv[:2] == ("moesched", "serve"):
            args = _moesched_parse(step)
            argv, env, _ = build_launch(load_config(args.moesched_config), args.moesched_config,
                                        args.sglang_args, python="python")
            assert env["MOESCHED_ENABLE"] == "1"
            argv = argv[3:]
        else:
            continue
        if argv not in out:
            out.append(argv)
    return out


def test_moesched_lines_parse_with_our_parsers():
    steps = [s for s in all_steps() if s.tool == "moesched"]
    assert {s.argv[1] for s in steps} == {"bench", "place", "serve"}
    for step in steps:
        args = _moesched_parse(step)
        if step.argv[1] == "bench":
            assert (ROOT / args.trace).is_file(), f"{step.name}: trace {args.trace} is not bundled"
        if step.argv[1] == "place":
            assert args.num_gpus == GPUS and args.num_redundant == REDUNDANT_EXPERTS


def test_patched_server_config_is_valid_and_gets_the_placement():
    load_config(ROOT / MOESCHED_CONFIG)  # raises ValueError on unknown keys / bad values
    for argv in _sglang_launch_args():
        assert _value(argv, "--ep-size") == str(GPUS)
        assert _value(argv, "--ep-num-redundant-experts") == str(REDUNDANT_EXPERTS)  # = place's R
    patched = [a for a in _sglang_launch_args() if "--init-expert-location" in a]
    assert len(patched) == 1 and _value(patched[0], "--init-expert-location") == PLACEMENT
    assert _value(patched[0], "--load-balance-method") == "total_tokens"  # the method the plugin replaces


def test_rounds_interleave_every_server_in_rotated_order():
    orders = [[s.name for s in server_order(r)] for r in range(3)]
    assert all(sorted(o) == ["moesched", "sglang", "vllm"] for o in orders)
    assert len({o[0] for o in orders}) == 3  # each server goes first once
    assert recipe()[-1][0].name == "report"


def test_shell_script_is_valid_bash():
    result = subprocess.run(["bash", "-n"], input=shell_script(), text=True, capture_output=True)
    assert result.returncode == 0, result.stderr


def test_doc_shows_the_recipe_lines():
    doc = (ROOT / "docs/gpu_recipe.md").read_text()
    shown = ("record-server", "place", "vllm", "sglang", "moesched", "bench-vllm")
    first = {}
    for step in all_steps():
        first.setdefault(step.name, step)
    for name in shown:
        assert shell_line(first[name]) in doc, f"docs/gpu_recipe.md lacks the {name} line"


@pytest.mark.sglang
def test_sglang_lines_parse_with_sglang_server_args():
    pytest.importorskip("sglang")
    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser(prog="sglang serve", exit_on_error=False)
    ServerArgs.add_cli_args(parser)
    launches = _sglang_launch_args()
    assert len(launches) == 3  # recording, stock, patched
    for argv in launches:
        args = parser.parse_args(argv)
        assert (args.tp_size, args.attn_dp_size, args.ep_size, args.dp_size) == (GPUS, GPUS, GPUS, 1)
    recorder = [parser.parse_args(a) for a in launches if "--expert-distribution-recorder-mode" in a]
    assert [a.expert_distribution_recorder_mode for a in recorder] == ["per_token"]  # transitions for place


@pytest.mark.sglang
def test_recorder_http_routes_exist_in_sglang():
    pytest.importorskip("sglang")
    spec = importlib.util.find_spec("sglang.srt.entrypoints.http_server")
    source = Path(spec.origin).read_text()
    posted = {s.argv[-1].split(":30000")[-1] for s in all_steps() if s.argv[0] == "curl"}
    assert posted == set(HTTP_ROUTES)
    for route in HTTP_ROUTES:
        assert f'@app.api_route("{route}", methods=["GET", "POST"])' in source


@pytest.mark.integration
def test_vllm_lines_parse_with_vllm_cli():
    pytest.importorskip("vllm")
    from tests.gpu_recipe.vllm_check import parse_vllm_lines

    assert len(parse_vllm_lines()) == ROUNDS  # one vllm serve line per round
