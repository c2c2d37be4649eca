"""Markdown report of the real-CPU comparison from its ``summary.json`` dict (see ``real_cpu.py``)."""

from __future__ import annotations

import shlex
from typing import Any


def _f(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _s(ms: float | None) -> str:
    """Milliseconds as seconds with two decimals."""
    return "n/a" if ms is None else f"{ms / 1000:.2f}"


def _settings(summary: dict[str, Any]) -> list[str]:
    w, lim = summary["workload"], summary["limits"]
    return [
        "## Setup",
        "",
        f"- Workload: {w['num_requests']} requests, Poisson at {w['rate_rps']} req/s (last arrival "
        f"{w['last_arrival_s']:.1f} s), seed {w['seed']}: {w['short_requests']} short (prompt "
        f"{w['short']['prompt_min']}-{w['short']['prompt_max']}, output {w['short']['output_min']}-"
        f"{w['short']['output_max']} tokens), {w['long_requests']} long (prompt {w['long']['prompt_min']}-"
        f"{w['long']['prompt_max']}, output {w['long']['output_min']}-{w['long']['output_max']}); "
        f"{w['prompt_tokens']:,} prompt and {w['output_tokens']:,} output tokens per replay.",
        f"- Same limits on every server: {lim['max_running']} running requests in total, "
        f"{lim['prefill_tokens']} prefill tokens per step (per SGLang rank), prompt + output <= "
        f"{summary['max_model_len']} tokens; SGLang DP size {lim['dp_size']}, KV pool "
        f"{lim['sglang_kv_tokens_per_rank']:,} tokens per rank.",
        f"- Plugin: sjf-aging, max_wait_s = {summary['max_wait_s']} s, aging_rate = {summary['aging_rate']:g}, predictor "
        + ("**capped by max_tokens (oracle: max_tokens = true output length)**"
           if summary["predictor_capped_by_max_tokens"] else
           "not capped by max_tokens (learns output lengths from finished requests only)")
        + ("; scored DP dispatch" if lim.get("moesched_dispatch", True) else
           "; **request layer only**: DP dispatch is SGLang's round robin, as on the stock server")
        + ("; DP controller waits blocking (plugin default)." if summary.get("dp_controller_blocking", False) else
           "; DP controller spins as in stock SGLang."),
        f"- {summary['rounds']} interleaved rounds per pair (order rotated each round: patched first in "
        "even rounds); ratios are opponent / patched (> 1: patched is lower).",
        "",
        "Command: `" + " ".join(shlex.quote(a) for a in summary["command"]) + "`",
    ]


def _pair(opponent: str, facts: dict[str, Any]) -> list[str]:
    a = facts["analysis"]
    lines = [f"## patched SGLang vs {opponent}", ""]
    for label, s in facts["servers"].items():
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in s["env"].items())
        lines.append(f"- {label} ({s['kind']}, ready in {s['ready_s']} s, RSS {s['rss_gib']} GiB): "
                     f"`{(env + ' ') if env else ''}{' '.join(shlex.quote(x) for x in s['command'])}`")
    lines += ["", "Bench: `" + " ".join(shlex.quote(x) for x in facts["bench_command"]) + "` (exit "
              f"{facts['bench_exit_code']})", "",
              "| round | server | load avg 1m (start-end) | ok | failed | TTFT mean s | short TTFT mean s | "
              "long TTFT mean s | TTFT max s | req/s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for label, rounds in a["rounds"].items():
        for m in rounds:
            load = m["load_avg_1m"]
            lines.append(
                f"| {m['round']} | {label} | {'n/a' if load is None else f'{load[0]:.1f}-{load[1]:.1f}'} | "
                f"{m['completed']} | {m['failed']} | {_s(m['ttft_mean'])} | {_s(m['ttft_short_mean'])} | "
                f"{_s(m['ttft_long_mean'])} | {_s(m['ttft_max'])} | {m['request_throughput']:.2f} |")
    lines += ["", f"| {opponent} / patched | pooled | per round | min-max |", "|---|---|---|---|"]
    for name, r in a["ratios"].items():
        lines.append(f"| {name.replace('_', ' ')} | {_f(r['pooled'])} | "
                     f"{', '.join(_f(v) for v in r['per_round'])} | {_f(r['min'])}-{_f(r['max'])} |")
    lines += ["", "Starvation bound of the patched server (TTFT <= max_wait_s + one step; one step = "
              "the longest inter-token gap of the replay):", "",
              "| round | bound s | of which step s | TTFT max s | over bound | requests |", "|---|---|---|---|---|---|"]
    for c in a["wait_bound"]:
        lines.append(f"| {c['round']} | {c['bound_s']:.2f} | {c['step_s']:.2f} | {c['ttft_max_s']:.2f} | "
                     f"{c['over_bound']} | {c['requests']} |")
    p = facts["plugin"]
    lines += ["", f"Plugin log: {p['log_lines']} lines in `plugin_log_{opponent}.txt`; last summaries: "
              f"{p['passes']} ordering passes over {p['ranks']} rank(s), {p['reordered']} of them with a "
              "head that differs from SGLang's own (FCFS) order.", ""]
    return lines


def render_report(summary: dict[str, Any]) -> str:
    """The whole report: setup, one section per pair, targets."""
    lines = ["# Real CPU: patched SGLang vs stock SGLang vs vanilla vLLM", ""] + _settings(summary) + [""]
    for opponent, facts in summary["pairs"].items():
        lines += _pair(opponent, facts)
    lines += ["## Targets", "", "| issue | target | pooled | per-round min-max | met |", "|---|---|---|---|---|"]
    for t in summary["targets"]:
        spread = "" if t["min"] is None else f"{_f(t['min'])}-{_f(t['max'])}"
        lines.append(f"| {t['issue']} | {t['target']} | {_f(t['pooled'])} | {spread} | "
                     f"{'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"
