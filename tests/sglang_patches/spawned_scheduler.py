"""Body of a process started with multiprocessing ``spawn``, as SGLang starts its schedulers.

It does what ``run_scheduler_process`` / ``run_data_parallel_controller_process`` do first,
``load_plugins()`` (entry-point discovery, then ``HookRegistry.apply_hooks``), and then drives the
real, possibly patched, SGLang classes through their ordinary methods. It reports plain data
through a queue; the test process asserts on it.
"""

from __future__ import annotations

import logging
import traceback
from multiprocessing.queues import Queue
from typing import Any

HOOKED = {
    "calc_priority": ("sglang.srt.managers.schedule_policy", "SchedulePolicy.calc_priority"),
    "preempt_to_schedule": ("sglang.srt.managers.schedule_policy", "PrefillAdder.preempt_to_schedule"),
    "release_kv_cache": ("sglang.srt.mem_cache.common", "release_kv_cache"),
    "total_tokens_scheduler": ("sglang.srt.managers.data_parallel_controller",
                               "DataParallelController.total_tokens_scheduler"),
    "compute_algorithm": ("sglang.srt.eplb.eplb_algorithms", "compute_algorithm"),
    "rebalance_experts": ("sglang.srt.eplb.eplb_algorithms", "rebalance_experts"),
}


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _is_wrapped(module_name: str, path: str) -> bool:
    import importlib

    obj: Any = importlib.import_module(module_name)
    for part in path.split("."):
        obj = getattr(obj, part)
    return hasattr(obj, "__wrapped__")


def _probe(expert_files: dict[str, str] | None) -> dict[str, Any]:
    from sglang.srt.plugins import load_plugins

    load_plugins()  # what every SGLang process does first

    import sglang_objects as so
    from sglang.srt.eplb import eplb_algorithms
    from sglang.srt.managers.schedule_policy import SchedulePolicy
    from sglang.srt.managers.scheduler_components import batch_result_processor
    from sglang.srt.mem_cache import common
    from sglang.srt.mem_cache.radix_cache import RadixCache

    log = _Collect()
    logging.getLogger("moesched.sglang").addHandler(log)
    logging.getLogger("moesched.sglang").setLevel(logging.INFO)
    report: dict[str, Any] = {
        "wrapped": {name: _is_wrapped(*where) for name, where in HOOKED.items()},
        "stale_import_rebound":
            batch_result_processor.release_kv_cache is common.release_kv_cache,
    }
    so.publish_server_args()
    policy = SchedulePolicy("fcfs", RadixCache.create_simulated(), False, False, False)
    queue = [so.waiting_req("long", 3000), so.waiting_req("short", 50), so.waiting_req("mid", 500)]
    policy.calc_priority(queue)
    report["order"] = [req.rid for req in queue]
    report["policy_enum"] = policy.policy.value

    controller = so.dp_controller([so.snapshot(0, waiting=6, uncached_tokens=6000),
                                   so.snapshot(1)])
    controller.total_tokens_scheduler(so.tokenized_req("dp-req", 300))
    report["dispatched"] = [socket.rids() for socket in controller.workers]

    try:
        report["algorithm"] = repr(eplb_algorithms.compute_algorithm("moesched", None, 1))
    except KeyError as exc:
        report["algorithm"] = f"KeyError {exc}"
    if expert_files is not None:
        report.update(_expert_location(so, expert_files))
    report["log"] = log.lines
    return report


def _expert_location(so: Any, files: dict[str, str]) -> dict[str, Any]:
    """Load a placement file and a logical_count file through SGLang's own loader."""
    from sglang.srt.configs.model_config import ModelConfig
    from sglang.srt.eplb.expert_location import compute_initial_expert_location_metadata

    out = {}
    for name, extra in (("placement", ("--init-expert-location", files["placement"])),
                        ("eplb", ("--init-expert-location", files["logical_count"],
                                  "--eplb-algorithm", "moesched"))):
        server_args = so.publish_server_args("--ep-num-redundant-experts", files["redundant"], *extra)
        metadata = compute_initial_expert_location_metadata(ModelConfig.from_server_args(server_args),
                                                            moe_ep_rank=0)
        out[name] = metadata.physical_to_logical_map_cpu.tolist()
    return out


def run(result: Queue, expert_files: dict[str, str] | None) -> None:
    """Process target: put ``("ok", report)`` or ``("error", traceback)`` on ``result``."""
    try:
        result.put(("ok", _probe(expert_files)))
    except BaseException:  # report everything to the parent; it fails the test
        result.put(("error", traceback.format_exc()))
