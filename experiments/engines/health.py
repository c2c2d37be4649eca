"""Readiness of an OpenAI-compatible server: ``GET /health``, then a 1-token completion (stdlib HTTP)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from experiments.engines.errors import EngineError


def http_request(url: str, payload: dict | None = None, timeout_s: float = 10.0) -> tuple[int, str]:
    """GET ``url`` (or POST ``payload`` as JSON); returns (status, body). Raises ``OSError`` if unreachable."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", errors="replace")


def is_healthy(base_url: str, timeout_s: float = 2.0) -> bool:
    """True if ``GET {base_url}/health`` answers 200."""
    try:
        return http_request(f"{base_url}/health", timeout_s=timeout_s)[0] == 200
    except OSError:
        return False


def completes_one_token(base_url: str, model_name: str, timeout_s: float = 60.0) -> bool:
    """True if ``POST {base_url}/v1/completions`` for 1 token answers 200 with one choice."""
    payload = {"model": model_name, "prompt": "Hello", "max_tokens": 1, "temperature": 0.0}
    try:
        status, body = http_request(f"{base_url}/v1/completions", payload, timeout_s)
        return status == 200 and len(json.loads(body).get("choices", [])) == 1
    except (OSError, ValueError):
        return False


def wait_until_ready(base_url: str, model_name: str, still_running: Callable[[], bool],
                     timeout_s: float, poll_s: float = 0.5) -> float:
    """Poll until ``/health`` answers 200 and a 1-token completion succeeds; returns seconds waited.

    Raises ``EngineError`` if ``still_running()`` turns false (the caller adds the log tail) or
    after ``timeout_s`` seconds.
    """
    start = time.monotonic()
    healthy = False
    while time.monotonic() - start < timeout_s:
        if not still_running():
            raise EngineError("server exited during start-up")
        healthy = healthy or is_healthy(base_url)
        if healthy and completes_one_token(base_url, model_name):
            return time.monotonic() - start
        time.sleep(poll_s)
    stage = "a 1-token completion" if healthy else "/health"
    raise EngineError(f"server not ready after {timeout_s:.0f} s (waiting for {stage})")
