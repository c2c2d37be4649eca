"""Start, health-check and stop one engine server; a context manager.

    with EngineServer(ServerConfig("sglang", pick_free_port())) as server:
        post(server.base_url + "/v1/completions", ...)
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from experiments.engines.commands import REPO_ROOT, ServerConfig, build_command, check_installed
from experiments.engines.errors import EngineError
from experiments.engines.health import wait_until_ready
from experiments.engines.ports import ensure_port_free
from experiments.engines.process import (PidRecord, group_rss_bytes, log_tail, spawn, start_ticks,
                                         stop_group)

DEFAULT_LOG_DIR = REPO_ROOT / "logs" / "engines"
#: SGLang with --dp-size 2 needed ~90 s here; a cold start after install can take longer.
DEFAULT_READY_TIMEOUT_S = 600.0


class EngineServer:
    """One server process group bound to 127.0.0.1, logging to ``<log_dir>/<kind>-<port>.log``."""

    def __init__(self, config: ServerConfig, log_dir: Path = DEFAULT_LOG_DIR,
                 ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S) -> None:
        self.config = config
        self.log_path = Path(log_dir) / f"{config.kind}-{config.port}.log"
        self.ready_timeout_s = ready_timeout_s
        self.ready_seconds: float | None = None  # wall time from spawn to first 1-token completion
        self._process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return self.config.base_url

    @property
    def pid(self) -> int:
        if self._process is None:
            raise EngineError(f"{self.config.kind} server on port {self.config.port} is not started")
        return self._process.pid

    def start(self) -> EngineServer:
        """Spawn the server and wait until it answers; on failure stop it and raise ``EngineError``."""
        check_installed(self.config)
        ensure_port_free(self.config.port)
        argv, env = build_command(self.config)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_text(f"$ {' '.join(argv)}\n")
        started = time.monotonic()
        self._process = spawn(argv, env, self.log_path)
        try:
            wait_until_ready(self.base_url, self.config.model_name,
                             lambda: self._process.poll() is None, self.ready_timeout_s)
        except EngineError as exc:
            code = self._process.poll()
            self.stop()
            detail = f"exited with code {code}" if code is not None else str(exc)
            raise EngineError(f"{self.config.kind} server on port {self.config.port} failed to start "
                              f"({detail}); last lines of {self.log_path}:\n"
                              f"{log_tail(self.log_path)}") from None
        except BaseException:  # e.g. Ctrl-C while waiting: leave no server behind
            self.stop()
            raise
        self.ready_seconds = time.monotonic() - started
        return self

    def rss_bytes(self) -> int:
        """Resident memory of the server and its workers, in bytes."""
        return group_rss_bytes(self.pid)

    def pid_record(self) -> PidRecord:
        """What a pid file needs to find and stop this server from another process."""
        ticks = start_ticks(self.pid)
        if ticks is None:
            raise EngineError(f"{self.config.kind} server (pid {self.pid}) is not running")
        return PidRecord(kind=self.config.kind, pid=self.pid, start_ticks=ticks, port=self.config.port,
                         base_url=self.base_url, model_name=self.config.model_name,
                         log_path=str(self.log_path))

    def stop(self, grace_s: float = 20.0) -> str:
        """Stop the whole process group (SIGTERM, then SIGKILL); returns how it ended."""
        if self._process is None:
            return "not running"
        return stop_group(self._process.pid, grace_s, child=self._process)

    def __enter__(self) -> EngineServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
