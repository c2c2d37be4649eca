"""``python -m experiments.engines``: start a server in the background, stop it, list running ones.

    python -m experiments.engines start vllm|sglang [--port P] [--env K=V ...] [--plugins] [-- ENGINE ARGS]
    python -m experiments.engines stop --pid-file F
    python -m experiments.engines status [--pid-file F ...]

``start`` returns once the server has answered a 1-token completion and leaves it running; its pid
file (default ``logs/engines/<kind>-<port>.pid.json``) is what ``stop`` and ``status`` read.
Errors are one line on stderr (a server that died adds its log's last lines) and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.engines.commands import DEFAULT_MODEL, ENGINE_KINDS, ServerConfig, parse_env_assignments
from experiments.engines.errors import EngineError
from experiments.engines.health import is_healthy
from experiments.engines.ports import ensure_port_free, pick_free_port
from experiments.engines.process import (group_rss_bytes, read_pid_file, record_is_current, stop_group,
                                         write_pid_file)
from experiments.engines.server import DEFAULT_LOG_DIR, DEFAULT_READY_TIMEOUT_S, EngineServer

GIB = 1024 ** 3


def _start(args: argparse.Namespace) -> int:
    port = args.port if args.port is not None else pick_free_port()
    if args.port is not None:
        ensure_port_free(port)
    config = ServerConfig(kind=args.kind, port=port, model=args.model, extra_args=tuple(args.engine_args),
                          extra_env=parse_env_assignments(args.env), sglang_plugins=args.plugins)
    server = EngineServer(config, args.log_dir, args.timeout).start()
    pid_file = args.pid_file or Path(args.log_dir) / f"{args.kind}-{port}.pid.json"
    try:
        write_pid_file(pid_file, server.pid_record())
    except OSError:
        server.stop()
        raise
    print(f"{args.kind} ready at {server.base_url} (model {config.model_name}) in {server.ready_seconds:.1f} s, "
          f"pid {server.pid}, RSS {server.rss_bytes() / GIB:.2f} GiB, log {server.log_path}, "
          f"pid file {pid_file}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    record = read_pid_file(args.pid_file)
    if not record_is_current(record):
        args.pid_file.unlink()
        print(f"{record.kind} server (pid {record.pid}) was not running; removed stale {args.pid_file}")
        return 0
    outcome = stop_group(record.pid, args.grace)
    args.pid_file.unlink()
    print(f"{record.kind} server on port {record.port} (pid {record.pid}) {outcome}; removed {args.pid_file}")
    return 0


def _status(args: argparse.Namespace) -> int:
    pid_files = args.pid_file or sorted(Path(args.log_dir).glob("*.pid.json"))
    if not pid_files:
        print(f"no servers recorded in {args.log_dir}")
    for pid_file in pid_files:
        record = read_pid_file(pid_file)
        if not record_is_current(record):
            print(f"{pid_file}: {record.kind} pid {record.pid} not running (stale pid file)")
            continue
        health = "healthy" if is_healthy(record.base_url) else "NOT answering /health"
        print(f"{pid_file}: {record.kind} at {record.base_url} pid {record.pid} {health}, "
              f"RSS {group_rss_bytes(record.pid) / GIB:.2f} GiB, log {record.log_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.engines", description=__doc__.splitlines()[0])
    parser.add_argument("--log-dir", type=Path, default=DEFAULT_LOG_DIR, help="logs and pid files (default %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a server and wait until it answers")
    start.add_argument("kind", choices=ENGINE_KINDS)
    start.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    start.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model directory (default %(default)s)")
    start.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra environment variable")
    start.add_argument("--plugins", action="store_true", help="SGLang: load installed plugins (moesched); stock runs load none")
    start.add_argument("--pid-file", type=Path, help="default <log-dir>/<kind>-<port>.pid.json")
    start.add_argument("--timeout", type=float, default=DEFAULT_READY_TIMEOUT_S, help="seconds to wait for readiness")
    start.set_defaults(run=_start)
    stop = sub.add_parser("stop", help="stop a server recorded in a pid file (SIGTERM, then SIGKILL)")
    stop.add_argument("--pid-file", type=Path, required=True)
    stop.add_argument("--grace", type=float, default=20.0, help="seconds between SIGTERM and SIGKILL")
    stop.set_defaults(run=_stop)
    status = sub.add_parser("status", help="list recorded servers: alive, healthy, memory")
    status.add_argument("--pid-file", type=Path, action="append", help="default: every pid file in --log-dir")
    status.set_defaults(run=_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; everything after ``--`` is passed to the engine untouched."""
    argv = list(sys.argv[1:] if argv is None else argv)
    engine_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own_args = argv[:argv.index("--")] if "--" in argv else argv
    args = build_parser().parse_args(own_args)
    args.engine_args = engine_args
    try:
        return args.run(args)
    except (EngineError, OSError) as exc:
        print(f"experiments.engines {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
