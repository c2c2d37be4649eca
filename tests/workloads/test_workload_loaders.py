"""Trace loaders: the bundled traces, strict parsing of malformed rows, unknown formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.workloads import (BLOCK_TOKENS, WorkloadSpec, load_azure_csv, load_mooncake_jsonl,
                                   load_workload)

REPO = Path(__file__).resolve().parents[2]
AZURE_CONV = REPO / "data/traces/azure2023_conv.csv"
MOONCAKE = REPO / "data/traces/mooncake_synthetic_trace.jsonl"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_azure_bundled_trace_loads_sorted_with_relative_times():
    reqs = load_azure_csv(AZURE_CONV, workload_class="conv")
    assert len(reqs) == 19366
    assert reqs[0].arrival_s == 0.0
    assert all(a.arrival_s <= b.arrival_s for a, b in zip(reqs, reqs[1:]))
    assert (reqs[0].input_tokens, reqs[0].output_tokens, reqs[0].workload_class) == (374, 44, "conv")
    # 18:15:46.6805900 -> 18:15:50.9951690
    assert reqs[1].arrival_s == pytest.approx(4.314579)


def test_azure_sorts_unsorted_rows(tmp_path):
    path = write(tmp_path, "t.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                 "2023-11-16 18:00:02.0,10,3\n2023-11-16 18:00:01.5,20,4\n")
    reqs = load_azure_csv(path)
    assert [(r.request_id, r.arrival_s) for r in reqs] == [("azure-1", 0.0), ("azure-0", 0.5)]


@pytest.mark.parametrize("row, field", [
    ("2023-11-16 18:00:01.0,abc,3", "ContextTokens"),
    ("2023-11-16 18:00:01.0,10,0", "GeneratedTokens"),
    ("yesterday,10,3", "TIMESTAMP"),
    ("2023-11-16 18:00:01.0,10", "row"),
])
def test_azure_malformed_row_names_file_line_and_field(tmp_path, row, field):
    path = write(tmp_path, "bad.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00.0,1,1\n" + row + "\n")
    with pytest.raises(ValueError, match=rf"bad\.csv:3: (field )?{field}: expected"):
        load_azure_csv(path)


def test_azure_missing_column_and_empty(tmp_path):
    with pytest.raises(ValueError, match="missing GeneratedTokens"):
        load_azure_csv(write(tmp_path, "a.csv", "TIMESTAMP,ContextTokens\n"))
    with pytest.raises(ValueError, match="no requests"):
        load_azure_csv(write(tmp_path, "b.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"))


def test_mooncake_bundled_trace_blocks_and_sessions():
    reqs = load_mooncake_jsonl(MOONCAKE)
    assert len(reqs) == 3993
    assert all(len(r.prefix_blocks) * BLOCK_TOKENS <= r.input_tokens for r in reqs)
    first = reqs[0]
    assert first.input_tokens == 40160 and first.output_tokens == 6
    assert first.prefix_blocks == tuple(range(40160 // 512)) and first.session_id == "mc-0"
    assert len({r.session_id for r in reqs}) == 2211


def test_mooncake_session_is_first_block_and_partial_block_dropped(tmp_path):
    lines = [
        {"timestamp": 1000, "input_length": 1100, "output_length": 5, "hash_ids": [7, 8, 9]},
        {"timestamp": 3500, "input_length": 600, "output_length": 2, "hash_ids": [7, 10]},
        {"timestamp": 2000, "input_length": 100, "output_length": 2, "hash_ids": []},
    ]
    path = write(tmp_path, "m.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    reqs = load_mooncake_jsonl(path)
    assert [r.request_id for r in reqs] == ["mooncake-0", "mooncake-2", "mooncake-1"]
    assert [r.arrival_s for r in reqs] == [0.0, 1.0, 2.5]
    assert reqs[0].prefix_blocks == (7, 8) and reqs[2].prefix_blocks == (7,)
    assert reqs[0].session_id == reqs[2].session_id == "mc-7" and reqs[1].session_id is None


@pytest.mark.parametrize("line, field", [
    ('{"timestamp": 0, "input_length": 10, "output_length": 1}', "hash_ids"),
    ('{"timestamp": -1, "input_length": 10, "output_length": 1, "hash_ids": []}', "timestamp"),
    ('{"timestamp": 0, "input_length": "10", "output_length": 1.5, "hash_ids": []}', "output_length"),
    ('{"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": [1, 2]}', "hash_ids"),
    ('{"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": [true]}', "hash_ids"),
    ('[1, 2]', "line"),
    ('{"timestamp": 0,', "line"),
])
def test_mooncake_malformed_line(tmp_path, line, field):
    path = write(tmp_path, "bad.jsonl", '{"timestamp": 0, "input_length": 1, "output_length": 1, "hash_ids": [0]}\n' + line + "\n")
    with pytest.raises(ValueError, match=rf"bad\.jsonl:2: (field )?{field}: expected"):
        load_mooncake_jsonl(path)


def test_unknown_format_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown workload format 'sharegpt'; expected one of azure, mooncake, synthetic"):
        load_workload(WorkloadSpec(str(AZURE_CONV), "sharegpt"))


def test_load_workload_applies_cap_and_rate():
    reqs = load_workload(WorkloadSpec(str(AZURE_CONV), "azure", max_requests=50, rate_rps=5.0, max_total_tokens=1024))
    assert len(reqs) == 50
    assert reqs[-1].arrival_s == pytest.approx(49 / 5.0)
    assert all(r.input_tokens + r.output_tokens <= 1024 for r in reqs)


def test_synthetic_spec_file_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown field"):
        load_workload(WorkloadSpec(str(write(tmp_path, "s.json", '{"num_request": 3}')), "synthetic"))
    with pytest.raises(ValueError, match=r"s2\.json:1: expected a JSON"):
        load_workload(WorkloadSpec(str(write(tmp_path, "s2.json", '{"num_requests": ')), "synthetic"))
    with pytest.raises(ValueError, match="arrival: expected one of poisson, gamma"):
        load_workload(WorkloadSpec(str(write(tmp_path, "s3.json", '{"arrival": "weibull"}')), "synthetic"))
