"""``moesched simulate --ep-execution``: the execution model reaches the placement's MoE factors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.cli import main
from experiments.metrics.runs import load_runs
from expert_sched.placement import Placement, write_placement

REPO = Path(__file__).resolve().parents[2]
CONV = str(REPO / "data/traces/azure2023_conv.csv")
OLMOE = str(REPO / "data/routing/olmoe_routing_counts.npz")


def _simulate(tmp_path, *extra):
    """Two runs of one placement (contiguous experts on 2 GPUs), one per ``--config`` in ``extra``."""
    placement = tmp_path / "p.json"
    write_placement(placement, Placement(np.tile(np.arange(64), (3, 1)), num_experts=64, num_gpus=2))
    out = tmp_path / "run.json"
    code = main(["simulate", "--trace", CONV, "--format", "azure", "--engines", "1", "--rate", "4",
                 "--max-requests", "40", "--gpu-model", "qwen3-30b-a3b-2xh100-ep2",
                 "--routing-stats", OLMOE, "--routing-domain", "arxiv", "--ep-gpus", "2",
                 "--placement", str(placement), *extra, "--out", str(out)])
    return code, out


def test_execution_model_sets_remote_fraction(tmp_path):
    code, out = _simulate(tmp_path, "--ep-execution", "affinity", "--config", "aff:",
                          "--config", "ll:ep_execution=deepep-low-latency")
    assert code == 0
    affinity, low_latency = load_runs(out)
    assert (affinity.config["ep_execution"], low_latency.config["ep_execution"]) == ("affinity", "deepep-low-latency")
    assert low_latency.config["moe"]["remote_fraction"] == 0.5  # 2 GPUs, one replica each
    assert affinity.config["moe"]["remote_fraction"] != 0.5
    assert affinity.config["moe"]["imbalance"] == low_latency.config["moe"]["imbalance"]


def test_unknown_execution_model_exits_2(tmp_path, capsys):
    code, out = _simulate(tmp_path, "--config", "x:ep_execution=normal")
    assert code == 2 and "ep_execution" in capsys.readouterr().err
    assert not out.exists()
