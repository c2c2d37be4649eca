"""``moesched bench`` end to end against fake servers: outputs, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fake_openai import FakeOpenAIServer, unused_port

from experiments.bench.prompts import load_tokenizer
from experiments.cli import main
from experiments.metrics import load_runs
from process_state import process_state

TRACE = Path(__file__).resolve().parents[2] / "data/traces/azure2023_conv.csv"


def bench_args(tmp_path, tokenizer_dir, *endpoints, extra=()):
    args = ["bench", "--trace", str(TRACE), "--format", "azure", "--tokenizer", str(tokenizer_dir),
            "--rate", "40", "--max-requests", "12", "--max-total-tokens", "300", "--out", str(tmp_path / "run.json"),
            "--no-progress", "--cooldown", "0", "--stall-timeout", "2"]
    for ep in endpoints:
        args += ["--endpoint", ep]
    return args + list(extra)


def test_two_endpoints_repeated_write_json_markdown_plots(tmp_path, tokenizer_dir, capsys):
    tok = load_tokenizer(tokenizer_dir)
    with FakeOpenAIServer(tokenizer=tok, token_delay_s=0.0005) as a, \
            FakeOpenAIServer(tokenizer=tok, token_delay_s=0.001) as b:
        code = main(bench_args(tmp_path, tokenizer_dir, f"fast={a.url}", f"slow={b.url}", extra=[
            "--repeat", "2", "--slo-ttft-ms", "1000", "--slo-tpot-ms", "50", "--markdown", str(tmp_path / "run.md"),
            "--plots", str(tmp_path / "plots")]))
        assert len(a.requests) == len(b.requests) == 24
        assert all(r["ignore_eos"] and r["stream"] for r in a.requests)
    assert code == 0, capsys.readouterr().err
    runs = load_runs(tmp_path / "run.json")
    assert [r.label for r in runs] == ["fast", "slow"]
    for run in runs:
        assert run.summary["completed"] == 24 and run.summary["failed"] == 0
        assert len(run.repeats) == 2 and {r.repeat for r in run.requests} == {0, 1}
        assert run.summary["slo_attainment"] is not None
        assert all(r.input_tokens + r.output_tokens <= 300 for r in run.requests)
    md = (tmp_path / "run.md").read_text()
    assert "| fast | 24 | 0 |" in md and "Ratios against `fast`" in md and "| slow |" in md
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["latency_over_time.png", "tpot_cdf.png", "ttft_cdf.png"]
    assert "fast: 24 ok, 0 failed" in capsys.readouterr().out


def test_unreachable_endpoint_exits_2_with_one_line(tmp_path, tokenizer_dir, capsys):
    code = main(bench_args(tmp_path, tokenizer_dir, f"down=http://127.0.0.1:{unused_port()}"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith("moesched bench: error: endpoint down (http://127.0.0.1:")
    assert not (tmp_path / "run.json").exists()


def test_errors_mid_stream_are_failed_records_and_exit_1(tmp_path, tokenizer_dir, capsys):
    tok = load_tokenizer(tokenizer_dir)
    with FakeOpenAIServer(tokenizer=tok, mode_for=lambda body: "error_midstream" if body["max_tokens"] % 2 else "ok") as s:
        code = main(bench_args(tmp_path, tokenizer_dir, f"flaky={s.url}"))
    (run,) = load_runs(tmp_path / "run.json")
    odd = [r for r in run.requests if not r.ok]
    assert code == 1 and odd and run.summary["failed"] == len(odd) and run.summary["completed"] == 12 - len(odd)
    assert all("engine crashed mid-stream" in r.error for r in odd)
    assert "request(s) failed; first error: error event mid-stream" in capsys.readouterr().err


def test_bad_inputs_exit_2_without_traceback(tmp_path, tokenizer_dir, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00.0,x,1\n")
    args = bench_args(tmp_path, tokenizer_dir, "a=http://127.0.0.1:1")
    args[args.index(str(TRACE))] = str(bad)
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == f"moesched bench: error: {bad}:2: field ContextTokens: expected an integer >= 1, got 'x'"
    assert main(bench_args(tmp_path, tokenizer_dir, "a=http://127.0.0.1:1", extra=["--repeat", "0"])) == 2
    assert "--repeat: expected an integer >= 1" in capsys.readouterr().err
    assert main(bench_args(tmp_path, tokenizer_dir, "a=http://x", "a=http://y")) == 2
    assert "labels must be unique" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(bench_args(tmp_path, tokenizer_dir, "a=http://x", extra=["--format", "sharegpt"]))
    assert exc.value.code == 2 and "invalid choice: 'sharegpt'" in capsys.readouterr().err


def test_pause_idle_stops_the_other_group_during_a_replay_and_continues_it(tmp_path, tokenizer_dir, capsys):
    """A sleeping session stands for the idle server's process group (the fake servers run in this
    process): it is stopped while endpoint ``a`` is replayed and continued when the bench ends."""
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    seen_by_a: list[str] = []

    def record_state(body: dict) -> str:
        seen_by_a.append(process_state(idle.pid))
        return "ok"

    try:
        tok = load_tokenizer(tokenizer_dir)
        with FakeOpenAIServer(tokenizer=tok, mode_for=record_state) as a, FakeOpenAIServer(tokenizer=tok) as b:
            code = main(bench_args(tmp_path, tokenizer_dir, f"a={a.url}", f"b={b.url}",
                                   extra=["--pause-idle", f"b={idle.pid}"]))
        assert code == 0, capsys.readouterr().err
        assert seen_by_a and set(seen_by_a) == {"T"}
        assert process_state(idle.pid) != "T"
    finally:
        idle.kill()
        idle.wait()
    assert main(bench_args(tmp_path, tokenizer_dir, "a=http://x", extra=["--pause-idle", "c=123"])) == 2
    assert "--pause-idle: expected LABEL=PGID" in capsys.readouterr().err
