"""Cost of the request policies' queue operations (pure Python, one core).

Two figures per policy, on requests whose prompt and output lengths are drawn from the Azure
conv trace:

* ``add+pop @10k``: mean microseconds for one ``add`` plus one ``pop`` while 10,000 requests wait
  (steady state: the queue is filled first, then every iteration adds one and pops one).
  Target for sjf-aging: <= 20 us.
* ``order 1k``: milliseconds to produce the admission order of 1,000 waiting requests, as
  SGLang's ``calc_priority`` must every step; ``fresh`` builds the queue from the 1,000 requests
  and orders it (a plugin with no state kept between steps), ``kept`` orders a queue that already
  holds them. Target: <= 1 ms.

Times are CPU time of this process (``time.process_time``), which a busy machine inflates far less
than wall time; wall time and the 1-minute load average are recorded next to them.

Usage: python experiments/benchmarks/queue_overhead.py [--iterations 20000] [--out results/queue_overhead.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time
from pathlib import Path

from experiments.workloads.azure import load_azure_csv
from moesched_base.atomic import atomic_write_json
from request_sched.policies import create_queue
from request_sched.types import WaitingRequest

REPO = Path(__file__).resolve().parents[2]
POLICIES = ("fcfs", "sjf-aging", "vllm-sjf", "hrrn", "lpm")


def make_requests(count: int, seed: int, start_id: int = 0) -> list[WaitingRequest]:
    """``count`` requests with Azure-conv lengths, 10 ms apart, ids ``q<start_id + i>``."""
    rng = random.Random(seed)
    trace = load_azure_csv(REPO / "data/traces/azure2023_conv.csv")
    out = []
    for i in range(count):
        t = rng.choice(trace)
        out.append(WaitingRequest(f"q{start_id + i}", (start_id + i) * 0.01, prompt_tokens=t.input_tokens,
                                  max_new_tokens=2048, cached_tokens=rng.choice((0, 0, 0, 512)),
                                  priority=rng.choice((0, 0, 0, 1))))
    return out


def add_pop_us(policy: str, waiting: int, iterations: int, seed: int) -> tuple[float, float]:
    """Mean microseconds (CPU, wall) of one add + one pop with ``waiting`` requests queued."""
    queue = create_queue(policy)
    base = make_requests(waiting, seed)
    for r in base:
        queue.add(r, r.enqueue_s)
    extra = make_requests(iterations, seed + 1, start_id=waiting)
    now = extra[-1].enqueue_s
    cpu, wall = time.process_time(), time.perf_counter()
    for r in extra:
        queue.add(r, now)
        queue.pop(now)
    return ((time.process_time() - cpu) / iterations * 1e6,
            (time.perf_counter() - wall) / iterations * 1e6)


def order_ms(policy: str, waiting: int, repeats: int, seed: int) -> tuple[float, float]:
    """Median CPU milliseconds to order ``waiting`` requests: (fresh queue, kept queue)."""
    requests = make_requests(waiting, seed)
    now = requests[-1].enqueue_s
    warm = create_queue(policy)  # also warms shared caches (step-model memo) once
    for r in requests:
        warm.add(r, r.enqueue_s)
    fresh, kept = [], []
    for _ in range(repeats):
        started = time.process_time()
        queue = create_queue(policy) if policy != "sjf-aging" else create_queue(
            policy, job_size=warm.job_size)
        for r in requests:
            queue.add(r, r.enqueue_s)
        queue.ordered(now)
        fresh.append(time.process_time() - started)
        started = time.process_time()
        for _ in range(10):  # one ordering is below the CPU clock's resolution on some systems
            warm.ordered(now)
        kept.append((time.process_time() - started) / 10)
    fresh.sort()
    kept.sort()
    return fresh[len(fresh) // 2] * 1e3, kept[len(kept) // 2] * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=20000, help="add+pop pairs timed (default 20000)")
    parser.add_argument("--waiting", type=int, default=10000, help="queue length for add+pop (default 10000)")
    parser.add_argument("--order-waiting", type=int, default=1000, help="queue length to order (default 1000)")
    parser.add_argument("--repeats", type=int, default=21, help="repeats of the ordering timing (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--out", default=str(REPO / "results/queue_overhead.json"))
    args = parser.parse_args(argv)
    policies = [p for p in args.policies.split(",") if p]

    rows = []
    load_before = os.getloadavg()[0]
    print(f"{'policy':<10} {'add+pop @' + str(args.waiting) + ' cpu us':>20} {'wall us':>8} "
          f"{'order ' + str(args.order_waiting) + ' fresh ms':>20} {'kept ms':>8}")
    for policy in policies:
        iterations = args.iterations if policy not in ("vllm-sjf", "hrrn", "lpm") else max(1, args.iterations // 10)
        us, wall_us = add_pop_us(policy, args.waiting, iterations, args.seed)
        fresh_ms, kept_ms = order_ms(policy, args.order_waiting, args.repeats, args.seed)
        rows.append({"policy": policy, "add_pop_us": us, "add_pop_wall_us": wall_us,
                     "add_pop_waiting": args.waiting,
                     "add_pop_iterations": iterations, "order_fresh_ms": fresh_ms,
                     "order_kept_ms": kept_ms, "order_waiting": args.order_waiting})
        print(f"{policy:<10} {us:>20.2f} {wall_us:>8.2f} {fresh_ms:>20.3f} {kept_ms:>8.3f}")
    load = (load_before, os.getloadavg()[0])
    print(f"load average (1 min) before/after: {load[0]:.1f}/{load[1]:.1f} on {os.cpu_count()} cores")
    atomic_write_json(args.out, {"benchmark": "queue_overhead", "python": platform.python_version(),
                                 "machine": platform.machine(), "cpus": os.cpu_count(),
                                 "load_average_1min": load, "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
