"""The comparison scripts' quick paths on tiny workloads: outputs are well-formed (not that
targets are met), bad input exits 2, and the capacity method scales with the cluster."""

from __future__ import annotations

import json

import pytest

from experiments import demo
from experiments.comparisons import full_stack, request_layer
from experiments.comparisons.capacity import saturation_capacity
from experiments.comparisons.stack import Cluster, Stack
from experiments.comparisons.traces import bundled_trace
from experiments.metrics.runs import load_runs
from experiments.sim.config import EngineConfig
from perf_model.model_file import resolve_model


def _check_outputs(out, labels_per_trace: int, traces: list[str], pngs: list[str]) -> dict:
    runs = load_runs(out / "runs.json")
    assert len(runs) == labels_per_trace * len(traces)
    assert all(r.summary["completed"] == len(r.requests) and r.summary["failed"] == 0 for r in runs)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["schema"] == "moesched.runs/1" and all(r["requests"] == [] for r in summary["runs"])
    comparison = summary["comparison"]
    for trace in traces:
        cap = comparison["capacities"][trace]
        assert cap["rate_rps"] > 0 and cap["offered_rate_rps"] == pytest.approx(0.9 * cap["rate_rps"])
    for target in comparison["targets"]:
        assert isinstance(target["met"], bool) and target["value"] is not None
    report = (out / "report.md").read_text()
    assert "| config |" in report and "Targets" in report
    for name in pngs:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return comparison


def test_request_layer_quick(tmp_path, capsys):
    out = tmp_path / "rl"
    code = request_layer.main(["--quick", "--traces", "azure-code", "--requests", "120", "--capacity-requests",
                               "600", "--no-progress", "--out", str(out)])
    assert code == 0
    labels = len(request_layer.stacks(50.0, request_layer.QUICK_AGING_RATES))
    comparison = _check_outputs(out, labels, ["azure-code"], ["ratios.png", "aging_sweep_azure-code.png"])
    assert len(comparison["targets"]) == 10  # sjf-aging, and the whole layer (+ budget + headroom)
    assert {t["scope"] for t in comparison["targets"]} == {"azure-code"}
    assert sum(request_layer.FULL_LAYER in t["name"] for t in comparison["targets"]) == 5
    # vLLM's sjf on ours' own engine, against ours and the whole layer
    assert sum(request_layer.VLLM_SJF_ON_SGLANG in t["name"] for t in comparison["targets_other_baselines"]) == 2
    assert [p["aging_rate"] for p in comparison["aging_sweeps"]["azure-code"]] == list(request_layer.QUICK_AGING_RATES)
    assert "| sjf-aging |" in capsys.readouterr().out


def test_full_stack_quick(tmp_path):
    out = tmp_path / "fs"
    code = full_stack.main(["--quick", "--traces", "mooncake", "--requests", "120", "--capacity-requests", "400",
                            "--engines", "1", "--solve-time-s", "2", "--no-progress", "--out", str(out)])
    assert code == 0
    comparison = _check_outputs(out, len(full_stack.stacks(50.0)), ["mooncake"], ["ratios.png"])
    assert len(comparison["targets"]) == 3 * len(full_stack.TARGET_STACKS)
    factors = comparison["placements"]
    assert set(factors) == {"trivial", "eplb", "solver"}
    assert factors["solver"]["imbalance"] <= factors["eplb"]["imbalance"] + 1e-9 <= factors["trivial"]["imbalance"]
    # only under the affinity execution model does the solver's co-location lower the remote share
    remote = {name: f["remote_fraction"] for name, f in factors.items()}
    assert remote["solver"]["deepep-low-latency"] == remote["eplb"]["deepep-low-latency"]
    assert remote["solver"]["affinity"] < remote["eplb"]["affinity"]
    ablation = comparison["placement_ablation"]["mooncake"]
    assert list(ablation) == [variant for variant, _, _ in full_stack.ABLATION_VARIANTS]
    assert all(row["tpot_ms_ratio"] > 0 for row in ablation.values())


@pytest.mark.parametrize("argv", [["--traces", "nope"], ["--load", "0"], ["--requests", "10"]])
def test_bad_input_exits_2(tmp_path, argv, capsys):
    assert request_layer.main(argv + ["--out", str(tmp_path / "x")]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_demo_bad_input_exits_2(tmp_path):
    assert demo.main(["--solve-time-s", "0", "--out", str(tmp_path / "d")]) == 2
    assert not (tmp_path / "d").exists()


def test_capacity_scales_with_engines():
    """Two engines sustain about twice the rate of one (same request mix, round robin)."""
    model = resolve_model("qwen3-30b-a3b-h100")
    requests = bundled_trace("azure-code").load(800)
    one, two = (saturation_capacity(Stack("fcfs"), Cluster(n, EngineConfig(), model, "h100", load_refresh_s=0.0),
                                    requests, 1600) for n in (1, 2))
    assert 1.6 < two.rate_rps / one.rate_rps < 2.4


def test_capacity_refuses_an_unsaturated_run():
    model = resolve_model("qwen3-30b-a3b-h100")
    with pytest.raises(ValueError, match="do not saturate"):
        saturation_capacity(Stack("fcfs"), Cluster(8, EngineConfig(), model, "h100"),
                            bundled_trace("azure-conv").load(60))
