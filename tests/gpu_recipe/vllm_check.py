"""Parse the recipe's ``vllm serve`` lines with vLLM's own CLI parser (needs ``.venvs/vllm``).

Standard library + vLLM only, so it also runs as a plain script where pytest is not installed:
``PYTHONPATH=. .venvs/vllm/bin/python tests/gpu_recipe/vllm_check.py``.
"""

from __future__ import annotations

import argparse
import sys

from experiments.gpu_recipe.recipe import GPUS, MODEL, all_steps


def parse_vllm_lines() -> list[argparse.Namespace]:
    """Each vLLM step's arguments parsed and validated as ``vllm serve`` does; SystemExit on error."""
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parsed = []
    for step in all_steps():
        if step.tool != "vllm":
            continue
        parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
        args = parser.parse_args(step.args())
        validate_parsed_serve_args(args)
        assert args.model_tag == MODEL, args.model_tag
        assert args.data_parallel_size == GPUS and args.enable_expert_parallel, step.argv
        assert not args.enable_eplb and args.scheduling_policy == "fcfs", "vanilla vLLM must keep defaults"
        parsed.append(args)
    assert parsed, "the recipe has no vLLM step"
    return parsed


if __name__ == "__main__":
    n = len(parse_vllm_lines())
    print(f"vLLM parser accepted {n} vllm serve line(s)")
    sys.exit(0)
