"""The simulator host reports KV "in use" to dispatchers as SGLang's num_used_tokens does:
requests' own tokens plus pinned prefix blocks, evictable cached blocks excluded (a warm engine
must not look saturated)."""

from __future__ import annotations

from experiments.sim.config import EngineConfig
from experiments.sim.engine import SimEngine
from experiments.sim.request_state import SimRequest
from experiments.workloads.types import BLOCK_TOKENS, TraceRequest
from perf_model.presets import preset_model
from request_sched.policies import create_queue


def _run_until_idle(engine: SimEngine, now: float) -> float:
    while (duration := engine.begin_step(now)) is not None:
        now += duration
        engine.end_step(now)
    return now


def test_report_excludes_evictable_cache_and_counts_pinned_blocks():
    finished = []
    engine = SimEngine(0, EngineConfig(kv_capacity_tokens=64 * BLOCK_TOKENS), create_queue("fcfs"),
                       preset_model("qwen3-30b-a3b-h100"), None, lambda req, now: finished.append(req))
    first = SimRequest(TraceRequest("a", 0.0, 8 * BLOCK_TOKENS + 10, 4, prefix_blocks=tuple(range(8))))
    engine.enqueue(first, 0.0)
    now = _run_until_idle(engine, 0.0)
    assert finished == [first]
    assert engine.cache.blocks == 8 and engine.kv_used == 8 * BLOCK_TOKENS  # warm, idle
    assert engine.load.kv_used_tokens == 0  # reported by the last (idle) step: all 8 blocks evictable

    second = SimRequest(TraceRequest("b", now, 8 * BLOCK_TOKENS + 10, 50, prefix_blocks=tuple(range(8))))
    engine.enqueue(second, now)
    assert engine.begin_step(now) is not None  # admitted: its 8 cached blocks pinned, 10 tokens to prefill
    assert second.hit_tokens == 8 * BLOCK_TOKENS
    assert engine.load.kv_used_tokens == 8 * BLOCK_TOKENS + 10
