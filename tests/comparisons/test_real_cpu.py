"""Real-CPU comparison: the mixed workload, the analysis, the server settings (fast), and one small
run against real servers (``integration``: patched vs stock SGLang, one round, a few minutes)."""

from __future__ import annotations

import dataclasses
import json
import subprocess

import pytest

from experiments.comparisons import real_cpu
from experiments.comparisons.mixed_workload import MixedWorkload, RequestClass
from experiments.comparisons.real_cpu_analysis import (plugin_log_lines, reordered_summary, request_table,
                                                       round_metrics, ttft_ratio, wait_bound_checks)
from experiments.metrics.records import RequestRecord
from experiments.metrics.runs import RunResult
from experiments.workloads.load import WorkloadSpec, load_workload
from sglang_patches.config import parse_config


def test_mixed_workload_is_seeded_and_replays_as_an_azure_trace(tmp_path):
    workload = MixedWorkload(num_requests=200, rate_rps=5.0, long_fraction=0.3, seed=3)
    rows = workload.write_csv(tmp_path / "w.csv")
    assert rows == workload.draw() and rows != MixedWorkload(200, 5.0, 0.3, seed=4).draw()
    loaded = load_workload(WorkloadSpec(path=str(tmp_path / "w.csv"), format="azure"))
    assert [(r.input_tokens, r.output_tokens) for r in loaded] == [(p, o) for _, p, o, _ in rows]
    assert [r.arrival_s for r in loaded] == pytest.approx([t for t, *_ in rows], abs=1e-5)
    for _, prompt, output, is_long in rows:
        cls = workload.long if is_long else workload.short
        assert cls.prompt_min <= prompt <= cls.prompt_max and cls.output_min <= output <= cls.output_max
        assert (prompt > workload.short_prompt_limit) == is_long
    assert 0.15 < sum(r[3] for r in rows) / len(rows) < 0.45


def test_mixed_workload_refuses_overlapping_classes_and_bad_numbers():
    with pytest.raises(ValueError, match="short.prompt_max"):
        MixedWorkload(short=RequestClass(10, 2000, 1, 2))
    with pytest.raises(ValueError, match="rate_rps"):
        MixedWorkload(rate_rps=0)
    with pytest.raises(ValueError, match="request class"):
        RequestClass(5, 4, 1, 1)


def _record(label, repeat, prompt, ttft_ms, itl=(), ok=True):
    return RequestRecord(f"r{prompt}-{ttft_ms}", label, "u", 0.0, 0.0, prompt, 4, ttft_ms, 1.0,
                         ttft_ms + 10, list(itl), ok=ok, repeat=repeat)


def _run(label, per_round):
    records = [_record(label, k, p, t, itl) for k, rows in enumerate(per_round) for p, t, itl in rows]
    repeats = [{"request_throughput": 1.0 + k} for k in range(len(per_round))]
    return RunResult(label, {"host_load_avg_1m": [[1.0, 2.0]] * len(per_round)}, {"request_throughput": 1.0},
                     records, repeats)


def test_round_metrics_ratios_and_the_wait_bound():
    patched = _run("patched", [[(100, 1000, [50]), (1500, 9000, [2000])], [(100, 2000, []), (1500, 8000, [])]])
    stock = _run("stock", [[(100, 6000, []), (1500, 7000, [])], [(100, 4000, []), (1500, 6000, [])]])
    pm, sm = round_metrics(patched, 160), round_metrics(stock, 160)
    assert [m.ttft_short_mean for m in pm] == [1000, 2000]
    assert [m.ttft_long_mean for m in pm] == [9000, 8000]
    assert pm[0].max_itl == 2000 and pm[1].max_itl is None and pm[1].request_throughput == 2.0
    short = ttft_ratio(pm, sm, "ttft_short_mean")
    assert short.per_round == (6.0, 2.0) and short.min == 2.0 and short.max == 6.0
    assert short.pooled == pytest.approx(5000 / 1500)
    checks = wait_bound_checks(patched, pm, max_wait_s=7.0)
    assert checks[0].bound_s == pytest.approx(9.0) and checks[0].met          # 9 s <= 7 s + 2 s step
    assert checks[1].over_bound == 1 and not checks[1].met                   # 8 s > 7 s + 0 s
    table = request_table([patched, stock]).splitlines()
    assert len(table) == 1 + 8 and table[1].startswith("patched,0,") and table[1].endswith(",50.0")


def test_targets_need_every_round():
    def pair(short, overall):
        ratio = lambda v: {"pooled": sum(v) / len(v), "min": min(v), "max": max(v)}  # noqa: E731
        return {"analysis": {"ratios": {"ttft_short_mean": ratio(short), "ttft_mean": ratio(overall)},
                             "wait_bound": [{"over_bound": 0, "met": True}]}}
    found = real_cpu.targets({"stock": pair([3.5, 3.1, 9.0], [1.2, 1.1, 1.5]),
                              "vllm": pair([1, 1, 1], [0.05, 0.06, 4.8])})
    # issue 4 short ratio, issue 4 bound, issue 7 vs stock, issue 7 vs vllm (pooled 1.6, two rounds lost)
    assert [(t["issue"], t["met"]) for t in found] == [(4, True), (4, True), (7, True), (7, False)]
    assert found[3]["pooled"] == pytest.approx(1.6366, abs=1e-3)


def test_plugin_log_lines_and_reordering_summary(tmp_path):
    log = tmp_path / "s.log"
    log.write_text(
        "[x] Prefill batch, #new-seq: 1\n"
        "moesched plugin on (pid 1, config c): request=sjf-aging\n"
        "[t DP0] moesched request order [sjf-aging] pass 2: 9 waiting; admit first: a\n"
        "[t DP0] moesched request order [sjf-aging] summary: passes=4 reordered=1 (head ...)\n"
        "[t DP0] moesched request order [sjf-aging] summary: passes=9 reordered=3 (head ...)\n"
        "[t DP1] moesched request order [sjf-aging] summary: passes=5 reordered=2 (head ...)\n"
        "[t] moesched dp dispatch [scored]: 7a3b -> rank 0\n"
        "[t DP1] moesched preempt #1 (size ratio >= 4): 5c(prompt=40 ...) takes the slot of 9d(...)\n"
        "[t DP0] moesched preempt #1 (overdue): 7e(prompt=1500 ...) takes the slot of 1f(...)\n")
    lines = plugin_log_lines(log)
    assert len(lines) == 8 and not any("Prefill" in line for line in lines)
    assert reordered_summary(lines) == {"passes": 14, "reordered": 5, "ranks": 2, "preemptions": 2}


def _limits(dp=2):
    return real_cpu.EngineLimits(max_running=8, prefill_tokens=2048, dp_size=dp, sglang_kv_tokens_per_rank=16384)


def test_servers_share_limits_and_only_the_patched_one_loads_the_plugin(tmp_path):
    cfg = tmp_path / "m.toml"
    vllm = real_cpu.server_config("vllm", _limits(), cfg)
    stock = real_cpu.server_config("stock", _limits(), cfg)
    patched = real_cpu.server_config("patched", _limits(), cfg)
    assert vllm.extra_args[vllm.extra_args.index("--max-num-seqs") + 1] == "8"
    for server in (stock, patched):
        args = server.extra_args
        assert args[args.index("--max-running-requests") + 1] == "4"  # per rank, x 2 ranks
        assert args[args.index("--dp-size") + 1] == "2"
        assert server.extra_env["SGLANG_CPU_OMP_THREADS_BIND"] == "0|1"
    assert not stock.sglang_plugins and "MOESCHED_ENABLE" not in stock.extra_env
    assert patched.sglang_plugins and patched.extra_env["MOESCHED_ENABLE"] == "1"
    assert patched.extra_env["MOESCHED_CONFIG"] == str(cfg) and "total_tokens" in patched.extra_args
    request_only = real_cpu.server_config(
        "patched", real_cpu.EngineLimits(8, 2048, 2, 16384, moesched_dispatch=False), cfg)
    assert "--load-balance-method" not in request_only.extra_args and request_only.sglang_plugins
    assert "--enable-priority-scheduling" in patched.extra_args  # preemption on by default
    assert "--enable-priority-scheduling" not in stock.extra_args
    order_only = real_cpu.server_config(
        "patched", real_cpu.EngineLimits(8, 2048, 2, 16384, moesched_preemption=False), cfg)
    assert "--enable-priority-scheduling" not in order_only.extra_args
    fresh = real_cpu.server_config("plugin", dataclasses.replace(_limits(dp=2), snapshot_interval=1), cfg)
    assert fresh.extra_args[fresh.extra_args.index("--load-snapshot-publish-interval") + 1] == "1"
    single = real_cpu.server_config("patched", _limits(dp=1), cfg)
    assert "--load-balance-method" not in single.extra_args and "SGLANG_CPU_OMP_THREADS_BIND" not in single.extra_env


def test_plugin_config_is_valid_and_states_the_predictor_mode():
    for oracle in (False, True):
        config = parse_config(real_cpu.moesched_toml(25.0, 1e-4, oracle), "generated")
        assert config.request.policy == "sjf-aging"
        assert dict(config.request.options) == {"max_wait_s": 25.0, "aging_rate": 1e-4, "cap_by_max_tokens": oracle}
        assert config.dispatch.enabled
    assert not parse_config(real_cpu.moesched_toml(25.0, 1e-4, False, dispatch=False), "generated").dispatch.enabled
    preemption = parse_config(real_cpu.moesched_toml(25.0, 1e-4, False, preemption_ratio=3.0), "g").request.preemption
    assert preemption.enabled and preemption.size_ratio == 3.0 and preemption.max_per_request == 1
    off = parse_config(real_cpu.moesched_toml(25.0, 1e-4, False, preemption_ratio=None), "g").request.preemption
    assert not off.enabled
    late = parse_config(real_cpu.moesched_toml(25.0, 1e-4, False, late_binding=6, prefill_tokens=4096), "g")
    assert late.dp_controller.late_binding
    assert late.dp_controller.late_binding_config().hold.max_in_flight == 6
    assert late.dp_controller.late_binding_config().rebalance.chunk_tokens == 4096
    assert late.dp_controller.late_binding_config().rebalance.enabled
    holding_only = parse_config(real_cpu.moesched_toml(25.0, 1e-4, False, late_binding=6, late_binding_moves=False), "g")
    assert not holding_only.dp_controller.late_binding_config().rebalance.enabled
    assert not parse_config(real_cpu.moesched_toml(25.0, 1e-4, False), "g").dp_controller.late_binding


@pytest.mark.parametrize("argv, message", [
    (["--opponents", "sglang"], "--opponents"), (["--dp-size", "3"], "--dp-size"),
    (["--long", "1024,2000,16,100"], "--long"), (["--short", "1,2,3"], "--short"),
    (["--max-wait-s", "0"], "--max-wait-s"), (["--aging-rate", "-1"], "--aging-rate"),
    (["--size-ratio", "1"], "--size-ratio"),
    (["--opponents", "plugin"], "expected --late-binding N"), (["--late-binding", "0"], "--late-binding"),
    (["--late-binding", "4", "--request-layer-only"], "--late-binding"),
    (["--no-moves"], "--no-moves"),
    (["--snapshot-interval", "0"], "--snapshot-interval"),
])
def test_bad_options_exit_2_before_any_server_starts(argv, message, tmp_path, capsys):
    assert real_cpu.main(argv + ["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_reanalyse_without_a_run_exits_2(tmp_path, capsys):
    assert real_cpu.main(["--reanalyse", "--out", str(tmp_path)]) == 2
    assert "summary.json: not found" in capsys.readouterr().err


def _processes_on_ports(ports: list[str]) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() for port in ports if f"--port {port} " in line + " "]


@pytest.mark.integration
@pytest.mark.timeout(1800)
def test_small_real_run_against_stock_sglang(tmp_path):
    out, logs = tmp_path / "out", tmp_path / "logs"
    code = real_cpu.main(["--opponents", "stock", "--rounds", "1", "--requests", "10", "--rate", "4",
                          "--long", "1024,1500,8,16", "--out", str(out), "--log-dir", str(logs), "--cooldown", "1"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    pair = summary["pairs"]["stock"]
    for rounds in pair["analysis"]["rounds"].values():
        assert rounds[0]["completed"] == 10 and rounds[0]["failed"] == 0
    plugin_lines = (out / "plugin_log_stock.txt").read_text()
    assert "moesched plugin on" in plugin_lines and "moesched request order [sjf-aging]" in plugin_lines
    assert "moesched plugin on" not in (logs / f"{pair['servers']['stock']['log'].rsplit('/', 1)[-1]}").read_text()
    assert {t["issue"] for t in summary["targets"]} == {4, 7}
    assert "## Targets" in (out / "report.md").read_text()
    ports = [s["command"][s["command"].index("--port") + 1] for s in pair["servers"].values()]
    assert len(ports) == 2 and _processes_on_ports(ports) == []  # both servers stopped
