"""Real CPU servers (``make integration``): each engine starts from its venv and completes a request.

Needs ``make engines`` (both venvs and models/tiny-qwen3-moe); each server takes 20-40 s to start.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.engines import EngineServer, ServerConfig, pick_free_port
from experiments.engines.health import http_request

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kind", ["vllm", "sglang"])
def test_server_starts_completes_and_tokenizes(kind: str, tmp_path: Path) -> None:
    config = ServerConfig(kind, pick_free_port())
    with EngineServer(config, log_dir=tmp_path) as server:
        status, body = http_request(f"{server.base_url}/v1/completions", {
            "model": config.model_name, "prompt": "Hello expert", "max_tokens": 4,
            "ignore_eos": True, "temperature": 0.0}, timeout_s=60)
        assert status == 200, body
        assert json.loads(body)["usage"]["completion_tokens"] == 4
        status, body = http_request(f"{server.base_url}/tokenize",
                                    {"model": config.model_name, "prompt": "Hello expert"})
        assert status == 200, body
        assert len(json.loads(body)["tokens"]) == json.loads(body)["count"] > 0
        assert server.rss_bytes() > 0
    assert server.stop() == "not running"


def test_patched_sglang_serves_the_step_model_gauges(tmp_path: Path) -> None:
    """The plugin's [refit] on a DP-2 server started with --enable-metrics: both ranks' online step
    model error is on SGLang's /metrics."""
    config_file = tmp_path / "moesched.toml"
    config_file.write_text('[refit]\nenabled = true\nbase_model = "qwen3-30b-a3b-h100"\n')
    config = ServerConfig("sglang", pick_free_port(), sglang_plugins=True, sglang_max_total_tokens=16384,
                          extra_args=("--enable-metrics", "--dp-size", "2", "--load-balance-method", "total_tokens"),
                          extra_env={"MOESCHED_ENABLE": "1", "MOESCHED_CONFIG": str(config_file),
                                     "SGLANG_CPU_OMP_THREADS_BIND": "0|1"})
    with EngineServer(config, log_dir=tmp_path) as server:
        for i in range(12):  # the scored dispatcher spreads them; each rank times > 16 steps
            status, body = http_request(f"{server.base_url}/v1/completions", {
                "model": config.model_name, "prompt": "hello " * (20 + 10 * i), "max_tokens": 40,
                "ignore_eos": True}, timeout_s=120)
            assert status == 200, body
        status, body = http_request(f"{server.base_url}/metrics", None, timeout_s=30)
    assert status == 200
    for rank in ("0", "1"):
        line = next(l for l in body.splitlines()
                    if l.startswith(f'moesched:step_model_mape{{dp_rank="{rank}",tp_rank="0"}}'))
        assert 0.0 <= float(line.split()[-1]) < 10.0
