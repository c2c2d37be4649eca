"""``moesched bench`` against a real CPU engine that the test starts (``make integration``).

Needs the engines installed (``make engines``); starting a server takes 30-90 s on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.cli import main
from experiments.engines.commands import DEFAULT_MODEL, ServerConfig
from experiments.engines.ports import pick_free_port
from experiments.engines.server import EngineServer
from experiments.metrics import load_runs
from experiments.workloads import WorkloadSpec, load_workload

TRACE = Path(__file__).resolve().parents[2] / "data/traces/azure2023_conv.csv"


@pytest.mark.integration
@pytest.mark.parametrize("kind, api", [("vllm", "completions"), ("sglang", "completions"), ("sglang", "generate")])
def test_bench_replays_azure_on_a_real_server(tmp_path, kind, api):
    with EngineServer(ServerConfig(kind, pick_free_port())) as server:
        code = main(["bench", "--trace", str(TRACE), "--format", "azure", "--endpoint", f"{kind}={server.base_url}",
                     "--tokenizer", str(DEFAULT_MODEL), "--api", api, "--rate", "2", "--max-requests", "6",
                     "--max-total-tokens", "512", "--slo-ttft-ms", "60000", "--out", str(tmp_path / "run.json"),
                     "--no-progress"])
    (run,) = load_runs(tmp_path / "run.json")
    errors = [r.error for r in run.requests if not r.ok]
    assert code == 0 and not errors, errors
    # the server counted the synthesised prompts exactly as long as the trace asks and produced
    # exactly the trace's output lengths (either mismatch would have failed the request)
    trace = load_workload(WorkloadSpec(str(TRACE), "azure", rate_rps=2, max_requests=6, max_total_tokens=512))
    assert [(r.input_tokens, r.output_tokens) for r in run.requests] == [(t.input_tokens, t.output_tokens) for t in trace]
    for r in run.requests:
        # servers may pack several tokens into one chunk, so ITL has at most output_tokens - 1 gaps
        assert 0 < r.ttft_ms <= r.e2e_ms and len(r.itl_ms) <= r.output_tokens - 1
        assert sum(r.itl_ms) == pytest.approx(r.e2e_ms - r.ttft_ms, abs=1.0)
    assert run.summary["completed"] == 6 and run.summary["slo_attainment"] is not None
