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
