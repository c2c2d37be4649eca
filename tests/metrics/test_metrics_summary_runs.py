"""Metric definitions on hand-computed cases, and the run JSON round trip and validation."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from experiments.metrics import (RequestRecord, RunResult, Slo, dump_runs, latency_stats, load_runs, summarize,
                                 tpot_ms)


def rec(rid, ttft, e2e, out, itl=(), ok=True, inp=10):
    return RequestRecord(request_id=rid, label="x", endpoint="http://e", arrival_s=0.0, start_s=0.0,
                         input_tokens=inp, output_tokens=out, ttft_ms=ttft if ok else None,
                         tpot_ms=tpot_ms(e2e, ttft, out) if ok else None, e2e_ms=e2e if ok else None,
                         itl_ms=list(itl), ok=ok, error=None if ok else "HTTP 500")


def test_tpot_is_decode_time_over_tokens_after_the_first():
    assert tpot_ms(e2e_ms=1000.0, ttft_ms=100.0, output_tokens=10) == pytest.approx(100.0)
    assert tpot_ms(500.0, 100.0, 1) is None


def test_summary_hand_computed():
    records = [
        rec("a", ttft=100, e2e=1000, out=10, itl=[100] * 9),   # tpot 100
        rec("b", ttft=300, e2e=500, out=5, itl=[50] * 4),      # tpot 50
        rec("c", ttft=50, e2e=50, out=1),                      # no tpot, counts as 0 for SLOs
        rec("d", ttft=0, e2e=0, out=0, ok=False),
    ]
    s = summarize(records, duration_s=2.0, slo=Slo(ttft_ms=200, tpot_ms=80))
    assert (s["completed"], s["failed"]) == (3, 1)
    assert s["ttft_ms"]["mean"] == pytest.approx(150.0)
    assert s["ttft_ms"]["p50"] == pytest.approx(100.0)
    assert s["ttft_ms"]["p90"] == pytest.approx(260.0)  # linear interpolation between 100 and 300
    assert s["tpot_ms"]["mean"] == pytest.approx(75.0) and s["tpot_ms"]["p50"] == pytest.approx(75.0)
    assert s["itl_ms"]["mean"] == pytest.approx((900 + 200) / 13)
    assert s["e2e_ms"]["p99"] == pytest.approx(500 + 0.98 * 500)
    assert s["output_throughput"] == pytest.approx(16 / 2.0)
    assert s["request_throughput"] == pytest.approx(1.5)
    # a: tpot 100 > 80 fails; b: ttft 300 > 200 fails; c: good; d: failed
    assert s["good_completed"] == 1
    assert s["goodput"] == pytest.approx(0.5)
    assert s["slo_attainment"] == pytest.approx(0.25)


def test_no_slo_and_no_samples_give_nulls():
    s = summarize([rec("d", 0, 0, 0, ok=False)], duration_s=1.0)
    assert s["ttft_ms"] == {"mean": None, "p50": None, "p90": None, "p99": None}
    assert s["goodput"] is None and s["slo_attainment"] is None and s["completed"] == 0
    with pytest.raises(ValueError, match="duration"):
        summarize([], duration_s=0.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=200))
def test_latency_stats_are_ordered_and_bounded(values):
    s = latency_stats(values)
    assert min(values) - 1e-6 <= s["p50"] <= s["p90"] + 1e-9 <= s["p99"] + 2e-9 <= max(values) + 1e-6
    assert min(values) - 1e-6 <= s["mean"] <= max(values) + 1e-6


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1e4), st.floats(0, 1e4), st.integers(1, 100), st.booleans()), max_size=30),
       st.floats(1, 1e4), st.floats(1, 1e4))
def test_slo_counts_are_consistent(rows, slo_ttft, slo_tpot):
    records = [rec(str(i), t, t + d, n, ok=ok) for i, (t, d, n, ok) in enumerate(rows)]
    s = summarize(records, 10.0, Slo(slo_ttft, slo_tpot))
    assert s["completed"] + s["failed"] == len(records)
    assert 0 <= s["good_completed"] <= s["completed"]
    loose = summarize(records, 10.0, Slo(slo_ttft * 2, slo_tpot * 2))
    assert loose["good_completed"] >= s["good_completed"]


def test_run_json_round_trip_and_atomic(tmp_path):
    records = [rec("a", 100, 1000, 10, itl=[100] * 9), rec("d", 0, 0, 0, ok=False)]
    run = RunResult("vllm", {"endpoint": "http://e"}, summarize(records, 2.0), records,
                    repeats=[summarize(records, 2.0)])
    path = tmp_path / "run.json"
    dump_runs(path, [run])
    (back,) = load_runs(path)
    assert back.label == "vllm" and back.requests == records and back.summary == json.loads(json.dumps(run.summary))
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


@pytest.mark.parametrize("mutate, message", [
    (lambda o: o.pop("runs"), "expected a top-level object with a list 'runs'"),
    (lambda o: o["runs"][0]["summary"].pop("ttft_ms"), r"runs\[0\]\.summary\.ttft_ms: expected an object"),
    (lambda o: o["runs"][0]["summary"]["tpot_ms"].update(p99="fast"), r"summary\.tpot_ms\.p99: expected a number"),
    (lambda o: o["runs"][0]["summary"].update(completed=-1), r"summary\.completed: expected an integer"),
    (lambda o: o["runs"][0]["requests"][0].pop("ttft_ms"), r"requests\[0\]: field ttft_ms: expected present"),
    (lambda o: o["runs"][0]["requests"][0].update(ok="yes"), r"requests\[0\]: field ok: expected bool"),
    (lambda o: o["runs"][0].update(label=""), r"runs\[0\]\.label: expected a non-empty string"),
    (lambda o: o.update(schema="other/9"), "schema: expected"),
])
def test_load_runs_rejects_bad_schema(tmp_path, mutate, message):
    records = [rec("a", 100, 1000, 10)]
    path = tmp_path / "run.json"
    dump_runs(path, [RunResult("a", {}, summarize(records, 1.0), records)])
    obj = json.loads(path.read_text())
    mutate(obj)
    path.write_text(json.dumps(obj))
    with pytest.raises(ValueError, match=message):
        load_runs(path)


def test_dump_refuses_invalid_summary_and_leaves_no_file(tmp_path):
    path = tmp_path / "run.json"
    with pytest.raises(ValueError):
        dump_runs(path, [RunResult("a", {}, {"completed": 1}, [])])
    assert not path.exists()
