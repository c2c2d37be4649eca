"""Markdown tables, ratios against a baseline, plots and the report command."""

from __future__ import annotations

import pytest

from experiments.metrics import RequestRecord, RunResult, dump_runs, summarize, tpot_ms
from experiments.report.__main__ import main as report_main
from experiments.report.markdown import ratio_table, render_markdown
from experiments.report.plots import write_plots


def run(label, ttft, e2e, rounds=2):
    records = [RequestRecord(f"r{i}", label, "http://e", float(i), float(i), 10, 11, ttft, tpot_ms(e2e, ttft, 11), e2e,
                             [10.0] * 10, repeat=i % rounds) for i in range(4)]
    per_round = [summarize([r for r in records if r.repeat == k], 1.0) for k in range(rounds)]
    return RunResult(label, {}, summarize(records, 2.0), records, per_round)


def test_ratio_table_values():
    base, fast = run("base", 200.0, 1200.0), run("fast", 100.0, 600.0)
    table = ratio_table([base, fast], "base")
    # TTFT mean, p50, p99 halve; TPOT (500/10 vs 1000/10) halves; E2E halves; throughput equal
    assert "| fast | 0.50 | 0.50 | 0.50 | 0.50 | 0.50 | 0.50 | 1.00 | 0.50-0.50 | 0.50-0.50 |" in table
    with pytest.raises(ValueError, match="--baseline: expected one of the run labels base, fast"):
        ratio_table([base, fast], "nope")


def test_render_markdown_lists_runs_and_errors():
    a = run("a", 100.0, 600.0)
    a.requests[0] = RequestRecord("x", "a", "http://e", 0.0, 0.0, 10, 2, None, None, None, ok=False, error="HTTP 500: boom")
    text = render_markdown([a, run("b", 50.0, 300.0)], baseline="a")
    assert "| a | 4 | 0 | 100.0 |" in text and "Ratios against `a`" in text and "- HTTP 500: boom" in text
    with pytest.raises(ValueError, match="distinct run labels"):
        render_markdown([a, a])


def test_plots_and_report_command(tmp_path, capsys):
    runs = [run("a", 100.0, 600.0), run("b", 50.0, 300.0)]
    paths = write_plots(runs, tmp_path / "p")
    assert all(p.stat().st_size > 1000 and p.read_bytes()[:4] == b"\x89PNG" for p in paths)
    dump_runs(tmp_path / "r.json", runs)
    assert report_main([str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")]) == 0
    assert "| b |" in (tmp_path / "r.md").read_text()
    (tmp_path / "bad.json").write_text('{"runs": [{"label": "x"}]}')
    assert report_main([str(tmp_path / "bad.json")]) == 2
    assert "bad.json: runs[0].config: expected an object" in capsys.readouterr().err


def test_host_load_is_reported_when_recorded():
    a = run("a", 100.0, 600.0)
    a.config["host_load_avg_1m"] = [[1.5, 2.25], [3.0, 4.0]]
    assert "- a: 1.5 -> 2.2, 3.0 -> 4.0" in render_markdown([a])
