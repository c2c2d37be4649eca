"""The online step model's Prometheus gauges, as SGLang's /metrics collects them (multiprocess)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")  # SGLang's dependency: present where SGLang is
pytestmark = pytest.mark.sglang

from perf_model.online import OnlineStepModel  # noqa: E402
from perf_model.presets import preset_model  # noqa: E402
from sglang_patches.step_metrics import GAUGES, step_model_gauges  # noqa: E402

SCHEDULER = textwrap.dedent("""
    # a scheduler process: its recorder sets the gauges after 16 timed steps
    import os
    from perf_model.batch import BatchShape
    from perf_model.online import OnlineStepModel
    from perf_model.presets import preset_model
    from sglang_patches.hooks.step_timing import StepRecorder
    from sglang_patches.step_metrics import step_model_gauges
    from types import SimpleNamespace

    clock = iter(i * 0.01 for i in range(100))
    model = OnlineStepModel(preset_model("qwen3-30b-a3b-h100"))
    gauges = step_model_gauges({"dp_rank": os.environ["RANK"], "tp_rank": "0"})
    recorder = StepRecorder(model, 1000, clock=lambda: next(clock), gauges=gauges)
    batch = SimpleNamespace(forward_mode=SimpleNamespace(name="DECODE"), reqs=[1] * 8,
                            seq_lens_cpu=None, seq_lens_sum=4096)
    for _ in range(17):
        recorder.on_launch(batch)
    print(model.mape, model.scale, model.observed)
""")


def test_gauges_reach_the_multiprocess_collector(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    seen = {}
    for rank in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", SCHEDULER], capture_output=True, text=True,
                             check=True, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "RANK": rank,
                                              "PATH": "/usr/bin:/bin"}, cwd=Path(__file__).parents[2])
        seen[rank] = [float(v) for v in out.stdout.split()]
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    text = generate_latest(registry).decode()
    for rank, (mape, scale, observed) in seen.items():
        assert observed == 16.0  # the 17th launch closes the 16th step: gauges set then
        assert f'moesched:step_model_observed{{dp_rank="{rank}",tp_rank="0"}} 16.0' in text
        line = next(l for l in text.splitlines()
                    if l.startswith(f'moesched:step_model_mape{{dp_rank="{rank}"'))
        assert float(line.split()[-1]) == pytest.approx(mape)
        assert f'moesched:step_model_scale{{dp_rank="{rank}",tp_rank="0"}}' in text
    assert all(f"moesched:step_model_{suffix}" in text for suffix, _ in GAUGES.values())


def test_no_gauges_without_sglang_metrics() -> None:
    assert step_model_gauges({"dp_rank": "0"}, environ={}) is None
    assert OnlineStepModel(preset_model("qwen3-30b-a3b-h100")).metrics().keys() == GAUGES.keys()
