"""The streaming client against the in-process fake server: timing, payloads and every failure mode."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from fake_openai import FakeOpenAIServer, unused_port

from experiments.bench.client import build_payload, send_request
from experiments.bench.endpoints import Endpoint, parse_endpoint, preflight
from experiments.bench.replay import ReplayOptions, replay_all, round_order
from experiments.workloads import TraceRequest


def send(server_url: str, req: TraceRequest, api: str = "completions", stall_timeout: float = 5.0, **ep):
    async def go():
        timeout = aiohttp.ClientTimeout(total=30, sock_read=stall_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            return await send_request(session, api, Endpoint("x", server_url, "fake-model", **ep), req,
                                      "alpha beta gamma", replay_start=0.0, repeat=0)
    return asyncio.run(go())


REQ = TraceRequest("r1", 0.0, 3, 6, session_id="s1", priority=2)


@pytest.mark.parametrize("api", ["completions", "generate"])
def test_ok_request_measures_like_vllm_bench(api):
    with FakeOpenAIServer(token_delay_s=0.01) as server:
        rec = send(server.url, REQ, api)
    assert rec.ok and rec.error is None and rec.output_tokens == 6
    assert len(rec.itl_ms) == 5 and all(x >= 5 for x in rec.itl_ms)
    assert rec.ttft_ms >= 5 and rec.e2e_ms >= rec.ttft_ms
    assert rec.tpot_ms == pytest.approx((rec.e2e_ms - rec.ttft_ms) / 5)
    assert sum(rec.itl_ms) == pytest.approx(rec.e2e_ms - rec.ttft_ms, abs=0.5)
    assert (rec.session_id, rec.priority) == ("s1", 2)


def test_payload_carries_max_tokens_ignore_eos_user_and_priority():
    ep = Endpoint("v", "http://h", "m")
    path, body = build_payload("completions", ep, REQ, "p")
    assert path == "/v1/completions"
    assert body["max_tokens"] == 6 and body["ignore_eos"] is True and body["stream"] is True
    assert body["user"] == "s1" and body["priority"] == 2 and body["model"] == "m"
    _, lower = build_payload("completions", Endpoint("v", "http://h", "m", priority_lower_first=True), REQ, "p")
    assert lower["priority"] == -2
    _, default = build_payload("completions", ep, TraceRequest("r", 0, 3, 6), "p")
    assert "priority" not in default and "user" not in default
    path, gen = build_payload("generate", ep, REQ, "p")
    assert path == "/generate" and gen["sampling_params"] == {"max_new_tokens": 6, "ignore_eos": True, "temperature": 0.0}


@pytest.mark.parametrize("mode, message", [
    ("http_error", "HTTP 500: .*internal failure"),
    ("error_midstream", "error event mid-stream: engine crashed mid-stream"),
    ("truncate", r"truncated output: received 3 of 6 tokens \(finish_reason=length\)"),
    ("drop", "(stream ended before \\[DONE\\]|ClientPayloadError)"),
    ("stall", "timed out after 1 chunks"),
])
@pytest.mark.parametrize("api", ["completions", "generate"])
def test_failures_become_failed_records(mode, message, api):
    with FakeOpenAIServer(mode, stall_s=5.0) as server:
        rec = send(server.url, REQ, api, stall_timeout=0.5)
    assert not rec.ok and rec.ttft_ms is None and rec.e2e_ms is None and rec.tpot_ms is None
    assert rec.error is not None and "\n" not in rec.error
    assert __import__("re").search(message, rec.error), rec.error


def test_refused_connection_is_a_failed_record():
    rec = send(f"http://127.0.0.1:{unused_port()}", REQ)
    assert not rec.ok and "ClientConnectorError" in rec.error


def test_prompt_token_mismatch_is_a_failure():
    with FakeOpenAIServer() as server:  # counts 3 words as 3 tokens
        rec = send(server.url, TraceRequest("r", 0.0, 4, 2))
    assert not rec.ok and "server counted 3 prompt tokens, workload asked for 4" in rec.error


def test_parse_endpoint_and_preflight():
    assert parse_endpoint("vllm=http://127.0.0.1:8000/v1/") == Endpoint("vllm", "http://127.0.0.1:8000")
    for bad in ("http://x:1", "a b=http://x", "a=ftp://x", "a="):
        with pytest.raises(ValueError, match="--endpoint: expected LABEL=http"):
            parse_endpoint(bad)
    with FakeOpenAIServer() as server:
        (ep,) = asyncio.run(preflight([Endpoint("a", server.url)], None))
        assert ep.model == "fake-model"
        with pytest.raises(ConnectionError, match="does not serve model 'other'; it serves fake-model"):
            asyncio.run(preflight([Endpoint("a", server.url)], "other"))
    with pytest.raises(ConnectionError, match=r"endpoint b \(http://127.0.0.1:\d+\) is not reachable"):
        asyncio.run(preflight([Endpoint("b", f"http://127.0.0.1:{unused_port()}")], None, timeout_s=2))


def test_replay_keeps_arrival_times_rotates_order_and_reseeds_rounds():
    reqs = [TraceRequest(f"r{i}", 0.1 * i, 3, 2) for i in range(5)]
    seeds, order = [], []
    with FakeOpenAIServer() as a, FakeOpenAIServer() as b:
        eps = [Endpoint("A", a.url, "fake-model"), Endpoint("B", b.url, "fake-model")]

        def prompts(rs, seed):
            seeds.append(seed)
            return ["x y z"] * len(rs)

        results = asyncio.run(replay_all(eps, reqs, prompts, ReplayOptions(repeat=3, seed=10, cooldown_s=0),
                                         on_start=lambda ep, r: order.append(ep.label)))
    assert order == ["A", "B", "B", "A", "A", "B"] and seeds == [10, 11, 12]
    assert [e.label for e in round_order(eps, 1)] == ["B", "A"]
    for res in results:
        assert all(r.ok for r in res.records)
        # never sent early; late only by scheduling delay (loose bound: CI machines are shared)
        for rec in res.records:
            assert rec.arrival_s - 1e-3 <= rec.start_s <= rec.arrival_s + 1.0
        starts = [rec.start_s for rec in sorted(res.records, key=lambda r: r.arrival_s)]
        assert starts == sorted(starts)
        assert res.duration_s >= 0.4
