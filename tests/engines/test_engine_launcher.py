"""Fast tests of experiments.engines that need no engine venv (a stdlib fake server stands in)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.engines import EngineError, EngineServer, ServerConfig, build_command, pick_free_port
from experiments.engines.__main__ import main as cli_main
from experiments.engines.commands import NO_SGLANG_PLUGINS, SGL_KERNEL_STANDIN, parse_env_assignments
from experiments.engines.ports import ensure_port_free
from experiments.engines.process import (PidRecord, group_members, group_rss_bytes, log_tail, pin_group,
                                         read_pid_file, record_is_current, spawn, start_ticks, stop_group,
                                         write_pid_file)

FAKE_SERVER = Path(__file__).resolve().parents[1] / "support" / "fake_openai_server.py"


@pytest.fixture
def fake_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake venv for both engines whose executables run the fake server; returns a model dir."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "vllm"):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_SERVER}" "$@"\n')
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("MOESCHED_VLLM_VENV", str(tmp_path / "venv"))
    monkeypatch.setenv("MOESCHED_SGLANG_VENV", str(tmp_path / "venv"))
    model = tmp_path / "tiny-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    return model


def test_free_port_is_bindable_and_busy_port_is_reported() -> None:
    port = pick_free_port()
    ensure_port_free(port)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        with pytest.raises(EngineError, match=f"port {port} on 127.0.0.1 is busy"):
            ensure_port_free(port)
    with pytest.raises(EngineError, match="out of range"):
        ensure_port_free(70000)


def test_pid_file_round_trip_and_bad_files(tmp_path: Path) -> None:
    record = PidRecord("sglang", 123, 456, 30000, "http://127.0.0.1:30000", "m", "/tmp/x.log")
    write_pid_file(tmp_path / "s.pid.json", record)
    assert read_pid_file(tmp_path / "s.pid.json") == record
    with pytest.raises(EngineError, match="not found"):
        read_pid_file(tmp_path / "missing.pid.json")
    (tmp_path / "bad.pid.json").write_text(json.dumps({"pid": 1}))
    with pytest.raises(EngineError, match=r"bad\.pid\.json is not a server record"):
        read_pid_file(tmp_path / "bad.pid.json")


def test_stale_record_is_not_current() -> None:
    me = os.getpid()
    ticks = start_ticks(me)
    assert record_is_current(PidRecord("vllm", me, ticks, 1, "", "", ""))
    assert not record_is_current(PidRecord("vllm", me, ticks + 1, 1, "", "", ""))  # pid reused
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not record_is_current(PidRecord("vllm", child.pid, 0, 1, "", "", ""))


def test_stop_group_terminates_leader_and_children(tmp_path: Path) -> None:
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    proc = spawn([sys.executable, "-c", code], os.environ, tmp_path / "group.log")
    deadline = time.monotonic() + 10
    while len(group_members(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(group_members(proc.pid)) == 2
    assert group_rss_bytes(proc.pid) > 0
    assert stop_group(proc.pid, grace_s=5, child=proc) == "terminated"
    assert group_members(proc.pid) == []
    assert stop_group(proc.pid, grace_s=5, child=proc) == "not running"


def test_pin_group_pins_every_thread_of_every_process(tmp_path: Path) -> None:
    code = ("import subprocess, sys, threading, time; threading.Thread(target=time.sleep, args=(60,)).start(); "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)")
    proc = spawn([sys.executable, "-c", code], os.environ, tmp_path / "group.log")
    try:
        deadline = time.monotonic() + 10
        while len(group_members(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        core = min(os.sched_getaffinity(0))
        assert pin_group(proc.pid, {core}) >= 3  # the leader's two threads and the child's one
        threads = [int(t) for pid in group_members(proc.pid) for t in os.listdir(f"/proc/{pid}/task")]
        assert {frozenset(os.sched_getaffinity(t)) for t in threads} == {frozenset({core})}
    finally:
        stop_group(proc.pid, grace_s=5, child=proc)


def test_stop_group_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    code = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    proc = spawn([sys.executable, "-c", code], os.environ, tmp_path / "stubborn.log")
    while "ready" not in log_tail(tmp_path / "stubborn.log"):
        time.sleep(0.05)
    assert stop_group(proc.pid, grace_s=0.5, child=proc) == "killed"


def test_log_tail_keeps_last_lines(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text("".join(f"line {i}\n" for i in range(100)))
    assert log_tail(tmp_path / "a.log", 3) == "line 97\nline 98\nline 99"
    assert log_tail(tmp_path / "missing.log") == ""


def test_sglang_command_is_offline_cpu_with_standin_and_no_plugins_by_default() -> None:
    config = ServerConfig("sglang", 31000, extra_args=("--dp-size", "2"), extra_env={"MOESCHED_ENABLE": "1"})
    argv, env = build_command(config, base_env={"PYTHONPATH": "/elsewhere"})
    assert argv[-2:] == ["--dp-size", "2"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv[argv.index("--port") + 1] == "31000"
    assert "--max-total-tokens" in argv and "--device" in argv
    assert env["SGLANG_USE_CPU_ENGINE"] == "1" and env["HF_HUB_OFFLINE"] == "1"
    assert env["PYTHONPATH"] == f"{SGL_KERNEL_STANDIN}{os.pathsep}/elsewhere"
    assert env["SGLANG_PLUGINS"] == NO_SGLANG_PLUGINS and env["MOESCHED_ENABLE"] == "1"
    _, env = build_command(ServerConfig("sglang", 31000, sglang_plugins=True), base_env={})
    assert "SGLANG_PLUGINS" not in env and env["PYTHONPATH"] == str(SGL_KERNEL_STANDIN)


def test_sglang_ranks_share_the_cores_instead_of_each_taking_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    def omp_threads(*args: str, base_env: dict[str, str] | None = None) -> str:
        return build_command(ServerConfig("sglang", 31000, extra_args=args), base_env=base_env or {})[1]["OMP_NUM_THREADS"]
    assert omp_threads() == "7"
    assert omp_threads("--dp-size", "2") == "3"
    assert omp_threads("--dp", "2", "--tp-size", "2") == "1"
    assert omp_threads("--dp-size", "16") == "1"
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert omp_threads() == "1"
    assert omp_threads("--dp-size", "2", base_env={"OMP_NUM_THREADS": "3"}) == "3"
    with pytest.raises(EngineError, match="--dp-size: expected a positive integer, got 'two'"):
        omp_threads("--dp-size", "two")


def test_vllm_command_keeps_kv_cache_small() -> None:
    argv, env = build_command(ServerConfig("vllm", 8000, vllm_kv_cache_gib=2), base_env={})
    assert argv[1:3] == ["serve", str(ServerConfig("vllm", 8000).model)]
    assert argv[argv.index("--served-model-name") + 1] == "tiny-qwen3-moe"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2" and "PYTHONPATH" not in env
    with pytest.raises(EngineError, match="unknown engine 'tgi'"):
        build_command(ServerConfig("tgi", 1))


def test_env_assignments_are_checked() -> None:
    assert parse_env_assignments(["A=1", "SGLANG_CPU_OMP_THREADS_BIND=0|1"]) == {
        "A": "1", "SGLANG_CPU_OMP_THREADS_BIND": "0|1"}
    with pytest.raises(EngineError, match="'NOEQUALS' is not KEY=VALUE"):
        parse_env_assignments(["NOEQUALS"])


def test_missing_venv_and_model_say_run_make_engines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOESCHED_VLLM_VENV", str(tmp_path / "nowhere"))
    with pytest.raises(EngineError, match=r"vllm venv missing .*; run `make engines`"):
        EngineServer(ServerConfig("vllm", pick_free_port())).start()


def test_missing_model_says_run_make_engines(fake_install: Path, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"model missing .*; run `make engines`"):
        EngineServer(ServerConfig("sglang", pick_free_port(), model=tmp_path / "none")).start()


def test_server_starts_answers_and_stops(fake_install: Path, tmp_path: Path) -> None:
    config = ServerConfig("sglang", pick_free_port(), model=fake_install)
    with EngineServer(config, log_dir=tmp_path / "logs", ready_timeout_s=30) as server:
        assert server.ready_seconds is not None and server.ready_seconds < 30
        assert server.pid_record().port == config.port
        pid = server.pid
    assert group_members(pid) == []
    assert server.log_path.read_text().startswith("$ ")  # the command line heads the log


def test_server_that_dies_reports_exit_code_and_log(fake_install: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SERVER_MODE", "die")
    config = ServerConfig("vllm", pick_free_port(), model=fake_install)
    with pytest.raises(EngineError) as info:
        EngineServer(config, log_dir=tmp_path, ready_timeout_s=30).start()
    first_line, *rest = str(info.value).splitlines()
    assert "vllm server on port" in first_line and "exited with code 3" in first_line
    assert "fake engine: cannot start" in "\n".join(rest)


def test_cli_start_status_stop(fake_install: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pid_file = tmp_path / "s.pid.json"
    assert cli_main(["--log-dir", str(tmp_path), "start", "sglang", "--model", str(fake_install),
                     "--pid-file", str(pid_file), "--timeout", "30", "--", "--dp-size", "2"]) == 0
    assert "sglang ready at http://127.0.0.1:" in capsys.readouterr().out
    record = read_pid_file(pid_file)
    assert "--dp-size 2" in Path(record.log_path).read_text().splitlines()[0]
    assert cli_main(["--log-dir", str(tmp_path), "status"]) == 0
    assert "healthy" in capsys.readouterr().out
    assert cli_main(["stop", "--pid-file", str(pid_file)]) == 0
    assert "terminated" in capsys.readouterr().out and not pid_file.exists()
    assert group_members(record.pid) == []


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["stop", "--pid-file", str(tmp_path / "none.pid.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.pid.json not found" in err
    assert cli_main(["start", "sglang", "--env", "BROKEN"]) == 2
    assert "'BROKEN' is not KEY=VALUE" in capsys.readouterr().err


def test_cli_stop_removes_stale_pid_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    write_pid_file(tmp_path / "old.pid.json", PidRecord("vllm", child.pid, 1, 1, "", "", ""))
    assert cli_main(["stop", "--pid-file", str(tmp_path / "old.pid.json")]) == 0
    assert "was not running" in capsys.readouterr().out and not (tmp_path / "old.pid.json").exists()


def test_package_imports_without_torch() -> None:
    code = "import sys, experiments.engines, experiments.engines.__main__; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
