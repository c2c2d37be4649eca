"""``moesched serve``: start SGLang 0.5.23 with the moesched plugin switched on in every process.

Usage::

    moesched serve <any `python -m sglang.launch_server` arguments> [--moesched-config FILE]
                   [--dry-run]

Validates the config (:mod:`sglang_patches.config`), sets ``MOESCHED_ENABLE=1`` (and
``MOESCHED_CONFIG``) so SGLang's spawned scheduler and data-parallel controller processes load the
plugin through the ``sglang.srt.plugins`` entry point, and replaces this process with
``<this python> -m sglang.launch_server <arguments>``. Arguments it adds when absent:

* ``--init-expert-location <experts.placement_file>`` when the config names a placement;
* ``--load-balance-method total_tokens`` when there is more than one DP rank (``--dp-size`` x
  ``--attn-dp-size``, SGLang's ``num_dp_ranks``, each under any of its spellings) and the
  dispatcher is enabled (the plugin replaces SGLang's ``total_tokens`` method; any other method
  keeps SGLang's own);
* ``--enable-priority-scheduling`` when ``[request.preemption]`` is enabled (SGLang consults its
  preemption path, which the plugin decides, only with it; requests without a priority all get
  SGLang's default one, so the order stays the plugin's);
* ``--enable-mixed-chunk`` when ``[launch] mixed_chunk`` is true (the default; a stock SGLang
  flag, see :class:`~sglang_patches.config.LaunchConfig`).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import shlex
import sys
from collections.abc import Mapping, Sequence

from sglang_patches.config import CONFIG_ENV, ENABLE_ENV, MoeschedConfig, load_config

SGLANG_VERSION = "0.5.23"
PLUGIN_NAME = "moesched"
HOW_TO_GET_SGLANG = (f"install SGLang {SGLANG_VERSION} next to moesched: `make engines` (CPU venv "
                     f".venvs/sglang, then run .venvs/sglang/bin/moesched serve ...) or "
                     f"`pip install 'moesched[sglang]'`")

#: flags whose values multiply to SGLang 0.5.23's number of DP ranks (``num_dp_ranks`` =
#: ``dp_size * attn_dp_size``; ``arg_groups/fields/parallel.py``)
_DP_SIZE_FLAGS = (("--dp-size", "--data-parallel-size"),
                  ("--attn-dp-size", "--attention-data-parallel-size"))
_PRIORITY_FLAG = "--enable-priority-scheduling"
_NO_PREEMPTION_FLAG = "--disable-priority-preemption"
_LOAD_BALANCE_FLAG = "--load-balance-method"
_PLACEMENT_FLAG = "--init-expert-location"
_SCHEDULE_POLICY_FLAG = "--schedule-policy"
_MIXED_CHUNK_FLAG = "--enable-mixed-chunk"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """moesched's own options; every other argument is passed to ``sglang.launch_server``."""
    parser.allow_abbrev = False  # never swallow an SGLang flag that shares a prefix with ours
    parser.epilog = ("All other arguments go to `python -m sglang.launch_server` unchanged "
                     "(see its --help).")
    parser.add_argument("--moesched-config", metavar="FILE", default=None,
                        help="moesched TOML config (request policy, dispatcher, placement, "
                             "logging); defaults are used without it")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the environment and command that would run, and exit")


def option_value(argv: Sequence[str], names: Sequence[str]) -> str | None:
    """The value of the last ``--name VALUE`` / ``--name=VALUE`` in ``argv`` for any of ``names``."""
    value = None
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                value = argv[i + 1]
            elif arg.startswith(name + "="):
                value = arg[len(name) + 1:]
    return value


def dp_ranks(argv: Sequence[str]) -> int:
    """SGLang's number of DP ranks for ``argv``: the product of the ``_DP_SIZE_FLAGS`` values."""
    ranks = 1
    for names in _DP_SIZE_FLAGS:
        text = option_value(argv, names)
        if text is None:
            continue
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{names[0]}: expected an integer, got {text!r}") from None
        if value < 1:
            raise ValueError(f"{names[0]}: expected an integer >= 1, got {value}")
        ranks *= value
    return ranks


def build_launch(config: MoeschedConfig, config_path: str | None, sglang_args: Sequence[str],
                 python: str = sys.executable) -> tuple[list[str], dict[str, str], list[str]]:
    """Return ``(argv, env_updates, notes)`` for launching SGLang with the plugin on.

    ``notes`` are one-line remarks for the user (e.g. a flag that leaves a layer inactive).
    Raises ValueError when the arguments contradict the config.
    """
    args = list(sglang_args)
    notes: list[str] = []
    placement = config.experts.placement_file
    if placement:
        given = option_value(args, (_PLACEMENT_FLAG,))
        if given is not None:
            raise ValueError(f"{_PLACEMENT_FLAG} {given} conflicts with experts.placement_file "
                             f"{placement} in {config.source}; give only one")
        args += [_PLACEMENT_FLAG, placement]
    method = option_value(args, (_LOAD_BALANCE_FLAG,))
    if config.dispatch.enabled and dp_ranks(args) > 1:
        if method is None:
            args += [_LOAD_BALANCE_FLAG, "total_tokens"]
        elif method != "total_tokens":
            notes.append(f"{_LOAD_BALANCE_FLAG} {method} keeps SGLang's own DP dispatch; the "
                         f"moesched dispatcher replaces only total_tokens")
    policy = option_value(args, (_SCHEDULE_POLICY_FLAG,))
    if config.request.enabled and policy not in (None, "fcfs"):
        notes.append(f"{_SCHEDULE_POLICY_FLAG} {policy} keeps SGLang's own ordering; the moesched "
                     f"request policy takes over only fcfs (the default)")
    if config.request.enabled and config.request.preemption.enabled:
        if _NO_PREEMPTION_FLAG in args:
            raise ValueError(f"{_NO_PREEMPTION_FLAG} conflicts with request.preemption.enabled in "
                             f"{config.source}; give only one")
        if _PRIORITY_FLAG not in args:
            args.append(_PRIORITY_FLAG)
    if config.launch.mixed_chunk and _MIXED_CHUNK_FLAG not in args:
        args.append(_MIXED_CHUNK_FLAG)
    env = {ENABLE_ENV: "1"}
    if config_path:
        env[CONFIG_ENV] = os.path.abspath(config_path)
    return [python, "-m", "sglang.launch_server", *args], env, notes


def check_sglang(environ: Mapping[str, str] = os.environ) -> None:
    """Raise ValueError unless SGLang is importable here and would load the moesched plugin."""
    if importlib.util.find_spec("sglang") is None:
        raise ValueError(f"SGLang is not installed in {sys.executable}; {HOW_TO_GET_SGLANG}")
    version = importlib.metadata.version("sglang")
    if version != SGLANG_VERSION:
        raise ValueError(f"SGLang {version} is installed, but the plugin targets {SGLANG_VERSION}; "
                         f"{HOW_TO_GET_SGLANG}")
    names = {ep.name for ep in importlib.metadata.entry_points(group="sglang.srt.plugins")}
    if PLUGIN_NAME not in names:
        raise ValueError(f"the '{PLUGIN_NAME}' entry point (group sglang.srt.plugins) is not "
                         f"registered in {sys.executable}; install moesched in the same "
                         f"environment (`pip install -e .`)")
    allowed = environ.get("SGLANG_PLUGINS", "")
    if allowed and PLUGIN_NAME not in {name.strip() for name in allowed.split(",")}:
        raise ValueError(f"SGLANG_PLUGINS={allowed} excludes the '{PLUGIN_NAME}' plugin; add it "
                         f"or unset SGLANG_PLUGINS")


def run(args: argparse.Namespace) -> int:
    """Validate, then exec SGLang (or print the command with ``--dry-run``)."""
    config = load_config(args.moesched_config)
    argv, env, notes = build_launch(config, args.moesched_config, getattr(args, "sglang_args", []))
    for note in notes:
        print(f"moesched serve: note: {note}", file=sys.stderr)
    if args.dry_run:
        print(" ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()), shlex.join(argv))
        return 0
    check_sglang()  # ValueError -> one line and exit 2 from the moesched dispatcher
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, {**os.environ, **env})
    return 0  # not reached: execve replaces the process
