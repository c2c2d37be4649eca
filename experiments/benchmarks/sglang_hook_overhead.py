"""Cost of moesched's request-order hook around SGLang's ``SchedulePolicy.calc_priority``.

SGLang calls ``calc_priority`` on the waiting queue before every prefill batch. For each queue
length in ``--waiting`` this times, over ``--passes`` passes on the same queue of real SGLang
``Req`` objects (prompts of 10-2,000 tokens, a simulated ``RadixCache``):

* ``stock``: ``SchedulePolicy.calc_priority`` with SGLang's ``fcfs`` policy;
* ``hooked``: ``RequestOrderHooks.calc_priority`` wrapping it with ``--policy`` (default
  sjf-aging), re-matching the prefixes of all waiting requests every pass while at most
  ``--rematch-max`` wait (as SGLang's ``lpm`` does), otherwise only new arrivals. The first hooked
  pass (adding every request to the policy's queue) is run untimed.

Per variant: median and p90 milliseconds per pass, wall and CPU (``time.process_time``, which a
busy machine inflates less); the 1-minute load average is recorded.

Needs SGLang (the light install): run from the repository root with
``.venvs/sglang/bin/python experiments/benchmarks/sglang_hook_overhead.py [--waiting 100,1000]
[--passes 50] [--out results/sglang_hook_overhead.json]``. The SGLang objects are built by the
plugin tests' helpers (``tests/sglang_patches/sglang_objects.py``), which need
``models/tiny-qwen3-moe`` for the server args.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "sglang_patches"))  # real SGLang objects, built as in the tests

import sglang  # noqa: E402
import sglang_objects  # noqa: E402
from sglang.srt.managers.schedule_policy import SchedulePolicy  # noqa: E402
from sglang.srt.mem_cache.radix_cache import RadixCache  # noqa: E402

from moesched_base.atomic import atomic_write_json  # noqa: E402
from request_sched.policies import create_queue  # noqa: E402
from sglang_patches.decision_log import DecisionLog  # noqa: E402
from sglang_patches.hooks.request_order import RequestOrderHooks, WaitingQueueOrderer  # noqa: E402


def time_passes(fn: Callable[[], object], passes: int) -> dict[str, float]:
    """Median and p90 wall and CPU ms of ``passes`` calls of ``fn``."""
    wall, cpu = [], []
    for _ in range(passes):
        c, w = time.process_time(), time.perf_counter()
        fn()
        wall.append((time.perf_counter() - w) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
    wall.sort()
    cpu.sort()
    return {"wall_median_ms": wall[passes // 2], "wall_p90_ms": wall[int(0.9 * passes)],
            "cpu_median_ms": cpu[passes // 2], "cpu_p90_ms": cpu[int(0.9 * passes)]}


def measure(waiting: int, policy: str, rematch_max: int, passes: int) -> list[dict[str, object]]:
    """Rows for the stock and the hooked ``calc_priority`` on one queue of ``waiting`` requests."""
    schedule_policy = SchedulePolicy("fcfs", RadixCache.create_simulated(), False, False, False)
    hooks = RequestOrderHooks(lambda: WaitingQueueOrderer(create_queue(policy), policy, rematch_max,
                                                          DecisionLog(0, 0)))
    queue = [sglang_objects.waiting_req(f"r{i}", 10 + (i * 37) % 2000, first_token=i) for i in range(waiting)]
    hooks.calc_priority(SchedulePolicy.calc_priority, schedule_policy, queue)  # first pass: adds + matches
    variants = (("stock (fcfs)", lambda: SchedulePolicy.calc_priority(schedule_policy, queue)),
                (f"hooked ({policy})", lambda: hooks.calc_priority(SchedulePolicy.calc_priority,
                                                                   schedule_policy, queue)))
    return [{"waiting": waiting, "variant": label, "passes": passes, **time_passes(fn, passes)}
            for label, fn in variants]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--waiting", default="100,1000", help="comma-separated queue lengths (default 100,1000)")
    parser.add_argument("--passes", type=int, default=50, help="timed passes per variant (default 50)")
    parser.add_argument("--policy", default="sjf-aging", help="moesched request policy of the hook")
    parser.add_argument("--rematch-max", type=int, default=128,
                        help="re-match every waiting request's prefix while at most this many wait (default 128)")
    parser.add_argument("--out", default=str(REPO / "results" / "sglang_hook_overhead.json"))
    args = parser.parse_args(argv)
    try:
        lengths = [int(n) for n in args.waiting.split(",") if n.strip()]
    except ValueError:
        parser.error(f"--waiting: expected comma-separated integers, got {args.waiting!r}")
    if not lengths or min(lengths) < 1 or args.passes < 2:
        parser.error("--waiting: expected lengths >= 1; --passes: expected >= 2")

    sglang_objects.publish_server_args()
    load_before = os.getloadavg()[0]
    rows = [row for n in lengths for row in measure(n, args.policy, args.rematch_max, args.passes)]
    load = (load_before, os.getloadavg()[0])
    print("| waiting | calc_priority | wall median ms | wall p90 ms | CPU median ms | CPU p90 ms |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['waiting']} | {row['variant']} | {row['wall_median_ms']:.3f} | {row['wall_p90_ms']:.3f} "
              f"| {row['cpu_median_ms']:.3f} | {row['cpu_p90_ms']:.3f} |")
    print(f"load average (1 min) before/after: {load[0]:.1f}/{load[1]:.1f} on {os.cpu_count()} cores")
    atomic_write_json(args.out, {"benchmark": "sglang_hook_overhead", "sglang": sglang.__version__,
                                 "python": platform.python_version(), "machine": platform.machine(),
                                 "cpus": os.cpu_count(), "load_average_1min": load, "policy": args.policy,
                                 "rematch_max": args.rematch_max, "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
