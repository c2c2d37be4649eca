"""The dispatch-layer comparison's quick path on tiny workloads: outputs well-formed (not that the
targets are met), dispatch metrics in range, bad input exits 2 with nothing written."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from experiments.comparisons import dispatch_layer
from experiments.comparisons.dispatch_metrics import BalanceSampler
from experiments.metrics.runs import load_runs

PNG = b"\x89PNG\r\n\x1a\n"


def test_dispatch_layer_quick(tmp_path, capsys):
    out = tmp_path / "dispatch"
    code = dispatch_layer.main(["--quick", "--requests", "150", "--capacity-requests", "1500", "--no-progress",
                                "--out", str(out)])
    assert code == 0
    labels = [p.label for p in dispatch_layer.policies("a", "b")]
    runs = load_runs(out / "runs.json")
    assert [r.label for r in runs] == [f"{t}/{label}" for t in dispatch_layer.TRACES for label in labels]
    for run in runs:
        assert run.summary["completed"] == len(run.requests) == 150 and run.summary["failed"] == 0
        d = run.summary["dispatch"]
        assert 0.0 <= d["prefix_hit_rate"] < 1.0
        for name in ("queued_prefill", "outstanding"):
            for key in (f"{name}_max_over_mean", f"{name}_max_over_mean_sample_mean"):
                assert 1.0 <= d[key] <= 8.0
        assert sum(d["requests_per_engine"]) == 150 and len(d["requests_per_engine"]) == 8
    by_label = {r.label: r for r in runs}
    # round robin spreads requests evenly; sessions share prefixes that a cache-aware policy hits
    assert max(by_label["mooncake/round-robin"].summary["dispatch"]["requests_per_engine"]) <= 19
    sessions = "azure-conv-sessions"
    assert (by_label[f"{sessions}/cache-aware"].summary["dispatch"]["prefix_hit_rate"]
            > by_label[f"{sessions}/round-robin"].summary["dispatch"]["prefix_hit_rate"])
    comparison = json.loads((out / "summary.json").read_text())["comparison"]
    for trace in dispatch_layer.TRACES:
        cap = comparison["capacities"][trace]
        assert cap["offered_rate_rps"] == pytest.approx(0.85 * cap["rate_rps"])
    assert len(comparison["targets"]) == 4
    assert all(isinstance(t["met"], bool) and t["value"] > 0 for t in comparison["targets"])
    report = (out / "report.md").read_text()
    assert "Targets (issue 5)" in report and "| scored |" in report and "prefix hit rate" in report
    for name in ["ratios.png", *(f"ttft_cdf_{t}.png" for t in dispatch_layer.TRACES)]:
        assert (out / name).read_bytes()[:8] == PNG
    assert "| gaps-hybrid |" in capsys.readouterr().out


def test_balance_sampler_ratio():
    def engine(pending, running, waiting):
        return SimpleNamespace(pending_prefill=pending, running=[0] * running, waiting=[0] * waiting)

    sampler = BalanceSampler()
    assert list(sampler.tick([engine(0, 0, 0), engine(0, 0, 0)], 0.0)) == []  # idle: no sample
    sampler.tick([engine(100, 1, 1), engine(0, 0, 0)], 0.25)  # all on one of 2 engines: 2
    sampler.tick([engine(300, 1, 0), engine(300, 0, 1)], 0.5)  # even: 1
    summary = sampler.summary()
    assert summary["queued_prefill_max_over_mean"] == pytest.approx((100 + 300) / (50 + 300))
    assert summary["queued_prefill_max_over_mean_sample_mean"] == pytest.approx(1.5)
    assert summary["outstanding_max_over_mean"] == pytest.approx((2 + 1) / (1 + 1))
    assert summary["queued_prefill_samples"] == 2
    assert summary["queued_prefill_per_engine_time_mean"] == pytest.approx((0 + 50 + 300) / 3)


@pytest.mark.parametrize("argv, message", [
    (["--traces", "azure-code"], "--traces"),
    (["--load", "0"], "--load"),
    (["--requests", "10"], "--requests"),
    (["--scored-config", "configs/nope.toml"], "nope.toml"),
])
def test_bad_input_exits_2(tmp_path, argv, message, capsys):
    assert dispatch_layer.main(argv + ["--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err
    assert not (tmp_path / "x").exists()


def test_bad_scored_config_names_the_key(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[weights]\nprefix_load = -1\n")
    assert dispatch_layer.main(["--scored-config", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "weights.prefix_load" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
