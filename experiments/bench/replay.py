"""Replay a workload at its arrival times against several endpoints, interleaved and repeated.

Round r (0-based) replays the whole workload against every endpoint in turn, one endpoint at a
time, in the order rotated by r (A B C, then B C A, ...), so slow drifts of a shared machine hit
every endpoint alike; each replay waits for all its requests before the next starts. Round r's
prompts are synthesised with seed ``seed + r``: identical for all endpoints within a round, new
in each round so no server's prefix cache can reuse an earlier round's prompts.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Callable

import aiohttp

from experiments.bench.client import send_request
from experiments.bench.endpoints import Endpoint
from experiments.metrics.records import RequestRecord
from experiments.workloads.types import TraceRequest
from moesched_base.http import bench_connector

#: builds the prompts of one round: (requests, round seed) -> one prompt text per request
PromptFactory = Callable[[list[TraceRequest], int], list[str]]


@dataclass(frozen=True)
class ReplayOptions:
    """How to replay.

    Attributes:
        api: ``"completions"`` or ``"generate"``.
        repeat: number of rounds.
        seed: prompt seed of round 0.
        request_timeout_s: limit on one request's whole life.
        stall_timeout_s: limit on silence between two reads of a stream (a stalled server).
        cooldown_s: pause between two replays so the previous server is idle.
    """

    api: str = "completions"
    repeat: int = 1
    seed: int = 0
    request_timeout_s: float = 600.0
    stall_timeout_s: float = 120.0
    cooldown_s: float = 1.0


@dataclass
class ReplayResult:
    """One endpoint's replay in one round: its records (in workload order), wall duration in s,
    the host's 1-minute load average at its start and end (a noisy shared machine shows here) and
    the round's start on the host's monotonic clock (``time.perf_counter()``, s; records' ``start_s``
    count from it), so host-side logs can be aligned with the records."""

    endpoint: Endpoint
    repeat: int
    records: list[RequestRecord]
    duration_s: float
    load_avg_1m: tuple[float, float]
    start_monotonic_s: float


def round_order(endpoints: list[Endpoint], round_index: int) -> list[Endpoint]:
    """The endpoints rotated left by ``round_index``."""
    k = round_index % len(endpoints)
    return endpoints[k:] + endpoints[:k]


async def replay_once(endpoint: Endpoint, requests: list[TraceRequest], prompts: list[str],
                      options: ReplayOptions, repeat: int, on_done: Callable[[], None]) -> ReplayResult:
    """Send each request at its ``arrival_s`` after the start; wait for all; return records and duration."""
    timeout = aiohttp.ClientTimeout(total=options.request_timeout_s, sock_connect=10.0,
                                    sock_read=options.stall_timeout_s)
    # no client-side queue (the server sees the trace's concurrency), a connection per request
    async with aiohttp.ClientSession(timeout=timeout, connector=bench_connector(),
                                     read_bufsize=2**20) as session:

        async def one(req: TraceRequest, prompt: str) -> RequestRecord:
            record = await send_request(session, options.api, endpoint, req, prompt, replay_start=start,
                                        repeat=repeat)
            on_done()
            return record

        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        tasks = []
        for req, prompt in zip(requests, prompts):
            delay = start + req.arrival_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(req, prompt)))
        records = list(await asyncio.gather(*tasks))
        duration = time.perf_counter() - start
    return ReplayResult(endpoint, repeat, records, duration, (load_before, os.getloadavg()[0]), start)


async def replay_all(endpoints: list[Endpoint], requests: list[TraceRequest], make_prompts: PromptFactory,
                     options: ReplayOptions, on_done: Callable[[], None] = lambda: None,
                     on_start: Callable[[Endpoint, int], None] = lambda ep, r: None) -> list[ReplayResult]:
    """All rounds for all endpoints, in rotated order; results in the order they ran.

    ``on_start(endpoint, round)`` runs before each replay's cooldown, so whatever it prepares
    (a paused server continued, see :mod:`experiments.bench.pause`) has the cooldown to settle."""
    results = []
    for r in range(options.repeat):
        prompts = make_prompts(requests, options.seed + r)
        for endpoint in round_order(endpoints, r):
            on_start(endpoint, r)
            if results and options.cooldown_s > 0:
                await asyncio.sleep(options.cooldown_s)
            results.append(await replay_once(endpoint, requests, prompts, options, r, on_done))
    return results
