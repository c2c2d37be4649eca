"""Parsing SGLang /v1/loads JSON and vLLM /metrics text; router request parsing."""

import pytest

from engine_dispatch.prompt_hashing import chained_block_hashes, text_block_hashes
from engine_dispatch.router.errors import RouterError
from engine_dispatch.router.load_sources import parse_sglang_loads, parse_vllm_metrics
from engine_dispatch.router.request_parse import parse_request

VLLM = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_waiting{engine="0",model_name="m"} 5.0
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
vllm:cache_config_info{block_size="16",num_gpu_blocks="1000",engine="0"} 1.0
"""


def test_vllm_metrics():
    fields = parse_vllm_metrics(VLLM)
    assert (fields.running, fields.waiting, fields.kv_used_tokens,
            fields.kv_capacity_tokens, fields.pending_prefill_tokens) == (3, 5, 4000, 16000, 0)
    with pytest.raises(ValueError, match="vllm:num_requests_running"):
        parse_vllm_metrics("other_metric 1\n")


def test_sglang_loads_sum_ranks():
    body = {"loads": [
        {"dp_rank": 0, "num_running_reqs": 2, "num_waiting_reqs": 1,
         "num_waiting_uncached_tokens": 300, "num_used_tokens": 500, "max_total_num_tokens": 4096},
        {"dp_rank": 1, "num_running_reqs": 1, "num_waiting_reqs": 0,
         "num_waiting_uncached_tokens": 0, "num_used_tokens": 100, "max_total_num_tokens": 4096}]}
    fields = parse_sglang_loads(body)
    assert (fields.running, fields.waiting, fields.pending_prefill_tokens,
            fields.kv_used_tokens, fields.kv_capacity_tokens) == (3, 1, 300, 600, 8192)
    for bad in ({}, {"loads": []}, {"loads": [3]}, {"loads": [{"num_running_reqs": "x"}]}):
        with pytest.raises(ValueError):
            parse_sglang_loads(bad)


def test_request_parse_session_tokens_and_blocks():
    text = "a" * 600
    parsed = parse_request(b'{"prompt": "' + text.encode() + b'", "user": "u1", "stream": true}',
                           chat=False, headers={}, request_id="r", block_tokens=64,
                           tokenize=None)
    assert parsed.stream and parsed.dispatch.session_id == "u1"
    assert parsed.dispatch.prompt_tokens == 150
    assert parsed.dispatch.block_hashes == text_block_hashes(text, 64)
    assert len(parsed.dispatch.block_hashes) == 2  # 600 chars = two full 256-char blocks
    by_header = parse_request(b'{"prompt": [1, 2, 3, 4, 5], "user": "u1"}', chat=False,
                              headers={"x-session-id": "s9"}, request_id="r", block_tokens=2,
                              tokenize=None)
    assert by_header.dispatch.session_id == "s9" and by_header.dispatch.prompt_tokens == 5
    assert by_header.dispatch.block_hashes == chained_block_hashes([1, 2, 3, 4, 5], 2)
    with pytest.raises(RouterError):
        parse_request(b'{"prompt": [1, "x"]}', chat=False, headers={}, request_id="r",
                      block_tokens=2, tokenize=None)


def test_chained_hashes_share_prefix_only():
    a = chained_block_hashes("abcdefgh", 2)
    b = chained_block_hashes("abcdXXgh", 2)
    assert a[:2] == b[:2] and a[2] != b[2] and a[3] != b[3]
