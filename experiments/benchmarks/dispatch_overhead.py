"""Dispatch overhead: the cost of one engine choice, and of the HTTP router hop.

1. Decision latency: every policy at ``--engines`` engines (default 64) whose prefix indexes
   already hold ``--prefixes`` cached prefixes (default 100,000 request chains of 4-32 blocks
   drawn from 2,000 shared roots, spread over the engines, dispatched and finished). Each timed
   ``pick`` is for a fresh request (half extend a cached prefix, half are new), with engine
   reports that change every call; ``on_dispatched`` / ``on_finished`` run untimed between picks.
   Target: <= 100 us per decision.
2. Router proxy overhead on loopback: one fake engine (tests/support/fake_engine.py, test
   support) and the router in this process; the same sequential request stream is sent directly
   to the engine and through the router, alternating, and the latency quantiles compared.
   Overhead = quantile(through router) - quantile(direct). Target: p99 <= 2 ms.

Both wall time and the thread's CPU time are recorded per decision: on a shared machine the wall
time's tail is the scheduler preempting the process (the load average is written to the JSON),
the CPU time is the decision's own cost.

Usage: python experiments/benchmarks/dispatch_overhead.py [--engines 64] [--prefixes 100000]
       [--decisions 5000] [--requests 2000] [--out results/dispatch_overhead.json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from engine_dispatch.config import config_from_dict
from engine_dispatch.factory import create_dispatcher
from engine_dispatch.router.app import ProxySettings, Router
from engine_dispatch.router.pool import EnginePool, PoolSettings
from engine_dispatch.types import DispatchRequest, EngineLoad
from moesched_base.atomic import atomic_write_json
from perf_model.presets import preset_model

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "support"))  # the fake upstream engine is test support
from fake_engine import FakeEngine  # noqa: E402
BLOCK_TOKENS = 64


def _chain(root: int, length: int, rng: random.Random) -> tuple[int, ...]:
    """A chain of ``length`` block hashes under shared root ``root`` (first 2 blocks shared)."""
    blocks = [hash(("root", root)), hash(("root", root, 1))]
    while len(blocks) < length:
        blocks.append(hash((blocks[-1], rng.getrandbits(32))))
    return tuple(blocks[:length])


def _request(rng: random.Random, index: int, roots: int) -> DispatchRequest:
    blocks = _chain(rng.randrange(roots), rng.randint(4, 32), rng)
    return DispatchRequest(f"r{index}", prompt_tokens=len(blocks) * BLOCK_TOKENS + 17,
                           block_hashes=blocks, session_id=f"s{rng.randrange(5000)}",
                           max_new_tokens=256)


def _policies() -> dict[str, dict]:
    predicted = config_from_dict({"weights": {"prefix_load": 1.0, "predicted_load": 1.0,
                                              "kv_use": 0.1, "stickiness": 0.3}})
    return {
        "round-robin": {},
        "least-requests": {},
        "power-of-two": {},
        "cache-aware": {},
        "scored (default config)": {"block_tokens": BLOCK_TOKENS},
        "scored + predicted_load": {"config": predicted, "block_tokens": BLOCK_TOKENS,
                                    "step_model": preset_model("qwen3-30b-a3b-h100")},
    }


def decision_latency(engines: int, prefixes: int, decisions: int, seed: int) -> list[dict]:
    rows = []
    for label, options in _policies().items():
        name = label.split(" ")[0]
        rng = random.Random(seed)
        dispatcher = create_dispatcher(name, engines, **options)
        loads = [EngineLoad(i, kv_capacity_tokens=500_000) for i in range(engines)]
        started = time.perf_counter()
        for i in range(prefixes):  # warm the indexes: 100k prefixes dispatched and finished
            request = _request(rng, i, roots=2000)
            engine = dispatcher.pick(request, loads, i * 1e-3)
            dispatcher.on_dispatched(request, engine, i * 1e-3)
            dispatcher.on_finished(request, engine, i * 1e-3, 1)
        warm_s = time.perf_counter() - started
        samples, cpu_samples = [], []
        now = prefixes * 1e-3
        in_flight: list[tuple[DispatchRequest, int]] = []
        for i in range(decisions):
            request = _request(rng, prefixes + i, roots=2000 if i % 2 else 10**9)
            for load in loads:  # fresh reports each decision
                load.running = rng.randrange(64)
                load.waiting = rng.randrange(16)
                load.pending_prefill_tokens = rng.randrange(8192)
                load.kv_used_tokens = rng.randrange(400_000)
                load.reported_s = now
            cpu_begin = time.thread_time_ns()
            begin = time.perf_counter_ns()
            engine = dispatcher.pick(request, loads, now)
            samples.append((time.perf_counter_ns() - begin) / 1e3)
            cpu_samples.append((time.thread_time_ns() - cpu_begin) / 1e3)
            dispatcher.on_dispatched(request, engine, now)
            in_flight.append((request, engine))
            if len(in_flight) > 256:
                done, done_engine = in_flight.pop(0)
                dispatcher.on_finished(done, done_engine, now, 1)
            now += 1e-3
        rows.append({"policy": label, "engines": engines, "prefixes_indexed": prefixes,
                     "decisions": decisions, "warmup_s": round(warm_s, 1),
                     "wall_mean_us": round(statistics.fmean(samples), 1),
                     "wall_p50_us": round(_quantile(samples, 0.5), 1),
                     "wall_p99_us": round(_quantile(samples, 0.99), 1),
                     "cpu_mean_us": round(statistics.fmean(cpu_samples), 1),
                     "cpu_p50_us": round(_quantile(cpu_samples, 0.5), 1),
                     "cpu_p99_us": round(_quantile(cpu_samples, 0.99), 1)})
        row = rows[-1]
        print(f"  {label:<26} wall p50 {row['wall_p50_us']:>7.1f} p99 {row['wall_p99_us']:>8.1f} us"
              f"  cpu p50 {row['cpu_p50_us']:>7.1f} p99 {row['cpu_p99_us']:>7.1f} us"
              f"  (warm-up {warm_s:.1f} s)", flush=True)
    return rows


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def proxy_overhead(requests: int, stream: bool) -> dict:
    engine = FakeEngine("e0")
    engine_server = TestServer(engine.application())
    await engine_server.start_server()
    dispatcher = create_dispatcher("scored", 1)
    pool = EnginePool([str(engine_server.make_url(""))], dispatcher,
                      PoolSettings(health_interval_s=3600, load_refresh_s=3600))
    router_server = TestServer(Router(pool, dispatcher, ProxySettings()).application())
    await router_server.start_server()
    direct_url = engine_server.make_url("/v1/completions")
    routed_url = router_server.make_url("/v1/completions")
    direct, routed = [], []
    async with aiohttp.ClientSession() as client:
        async def once(url, i: int) -> float:
            body = {"model": "fake-model", "prompt": f"request {i} " + "x" * 400, "stream": stream}
            begin = time.perf_counter()
            async with client.post(url, json=body) as response:
                await response.read()
                assert response.status == 200
            return (time.perf_counter() - begin) * 1e3

        for i in range(50):  # warm connections on both paths
            await once(direct_url, i)
            await once(routed_url, i)
        cpu = {"direct": 0.0, "routed": 0.0}
        for start in range(0, requests, 50):  # alternate blocks of 50 requests per path
            for label, url, into in (("direct", direct_url, direct), ("routed", routed_url, routed)):
                cpu_begin = time.process_time()
                for i in range(start, min(requests, start + 50)):
                    into.append(await once(url, i))
                cpu[label] += time.process_time() - cpu_begin
    await router_server.close()
    await engine_server.close()
    row = {"stream": stream, "requests": requests,
           "router_cpu_per_request_ms": round((cpu["routed"] - cpu["direct"]) / requests * 1e3, 3)}
    for label, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        row[f"direct_{label}_ms"] = round(_quantile(direct, q), 3)
        row[f"routed_{label}_ms"] = round(_quantile(routed, q), 3)
        row[f"overhead_{label}_ms"] = round(_quantile(routed, q) - _quantile(direct, q), 3)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", type=int, default=64)
    parser.add_argument("--prefixes", type=int, default=100_000)
    parser.add_argument("--decisions", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "dispatch_overhead.json")
    args = parser.parse_args()
    print(f"decision latency, {args.engines} engines, {args.prefixes} prefixes indexed:")
    decisions = decision_latency(args.engines, args.prefixes, args.decisions, args.seed)
    print("router proxy overhead on loopback (sequential requests):")
    proxy = []
    for stream in (False, True):
        proxy.append(asyncio.run(proxy_overhead(args.requests, stream)))
        row = proxy[-1]
        print(f"  stream={str(stream):<5} direct p50/p99 {row['direct_p50_ms']:.2f}/"
              f"{row['direct_p99_ms']:.2f} ms  routed {row['routed_p50_ms']:.2f}/"
              f"{row['routed_p99_ms']:.2f} ms  overhead p50 {row['overhead_p50_ms']:.2f} "
              f"p99 {row['overhead_p99_ms']:.2f} ms  router CPU/request "
              f"{row['router_cpu_per_request_ms']:.3f} ms", flush=True)
    print()
    print("| policy | wall p50 us | wall p99 us | CPU mean us | CPU p50 us | CPU p99 us |"
          " CPU p99 <= 100 us |")
    print("|---|---|---|---|---|---|---|")
    for row in decisions:
        print(f"| {row['policy']} | {row['wall_p50_us']} | {row['wall_p99_us']} | "
              f"{row['cpu_mean_us']} | {row['cpu_p50_us']} | {row['cpu_p99_us']} | "
              f"{'yes' if row['cpu_p99_us'] <= 100 else 'no'} |")
    print()
    print("| stream | direct p99 ms | routed p99 ms | overhead p50 ms | overhead p99 ms |"
          " router CPU per request ms | p99 overhead <= 2 ms |")
    print("|---|---|---|---|---|---|---|")
    for row in proxy:
        print(f"| {row['stream']} | {row['direct_p99_ms']} | {row['routed_p99_ms']} | "
              f"{row['overhead_p50_ms']} | {row['overhead_p99_ms']} | "
              f"{row['router_cpu_per_request_ms']} | "
              f"{'yes' if row['overhead_p99_ms'] <= 2 else 'no'} |")
    atomic_write_json(args.out, {
        "command": "python experiments/benchmarks/dispatch_overhead.py",
        "args": {k: str(v) for k, v in vars(args).items()},
        "machine": {"python": platform.python_version(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()},
        "decision_latency": decisions, "proxy_overhead": proxy})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
