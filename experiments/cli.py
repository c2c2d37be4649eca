"""The ``moesched`` command: one entry point, one module per subcommand.

Each subcommand module exposes ``add_arguments(parser)`` and ``run(args) -> int`` and is imported
only when chosen, so ``moesched place`` never pays for aiohttp and ``moesched bench`` never pays for
OR-Tools. Bad input (``ValueError``, ``OSError``) becomes one line on stderr and exit code 2; set
``MOESCHED_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

#: subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("experiments.bench.cli", "replay a workload against real OpenAI-compatible endpoints"),
    "simulate": ("experiments.sim.cli", "replay a workload on the discrete-event cluster simulator"),
    "calibrate": ("experiments.sim.calibrate_cli", "fit the step-latency model to a real engine"),
    "place": ("expert_sched.cli", "solve an expert placement (OR-Tools) and write SGLang's file"),
    "route": ("engine_dispatch.router.cli", "run the HTTP router in front of several engines"),
    "serve": ("sglang_patches.serve", "launch SGLang 0.5.23 with the moesched plugin switched on"),
}


def _usage() -> str:
    width = max(len(name) for name in SUBCOMMANDS)
    lines = ["usage: moesched <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "Run 'moesched <command> --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the chosen subcommand, return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"moesched: error: unknown command {name!r}; expected one of {', '.join(SUBCOMMANDS)}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"moesched {name}", description=SUBCOMMANDS[name][1])
    module.add_arguments(parser)
    if name == "serve":  # everything we do not know is passed to SGLang untouched
        args, passthrough = parser.parse_known_args(rest)
        args.sglang_args = passthrough
    else:
        args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except (ValueError, OSError) as exc:
        if os.environ.get("MOESCHED_DEBUG"):
            raise
        print(f"moesched {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"moesched {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
