"""The plugin in a spawned process, loaded through SGLang's own entry-point discovery.

Two processes: one with ``MOESCHED_ENABLE=1`` (hooks installed, real classes behave as moesched
says) and one without (SGLang stays stock). ~30-40 s: each child imports SGLang.
"""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("sglang")
pytestmark = pytest.mark.sglang

import spawned_scheduler  # noqa: E402  (needs sglang)
from sglang_objects import TINY_MODEL  # noqa: E402

from expert_sched.placement import Placement, write_placement  # noqa: E402
from expert_sched.sglang_algorithm import rebalance  # noqa: E402
from sglang_patches.config import CONFIG_ENV, ENABLE_ENV  # noqa: E402

NUM_LAYERS, NUM_EXPERTS, NUM_REDUNDANT = 2, 8, 8  # the tiny Qwen3-MoE, one EP rank


def _start(env: dict[str, str | None], expert_files: dict[str, str] | None
           ) -> tuple[multiprocessing.process.BaseProcess, Any]:
    """Spawn one probe with ``env`` applied (None unsets) for the child only."""
    context = multiprocessing.get_context("spawn")
    result = context.Queue()
    process = context.Process(target=spawned_scheduler.run, args=(result, expert_files))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            if value is None:
                patch.delenv(name, raising=False)
            else:
                patch.setenv(name, value)
        process.start()  # the child copies the environment now
    return process, result


def _collect(process: multiprocessing.process.BaseProcess, result: Any) -> dict[str, Any]:
    status, payload = result.get(timeout=240)
    process.join(timeout=30)
    assert status == "ok", payload
    return payload


@pytest.fixture(scope="module")
def logical_count() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 1000, size=(3, NUM_LAYERS, NUM_EXPERTS))


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory, logical_count: np.ndarray
            ) -> dict[str, dict[str, Any]]:
    """Run the plugin-on and plugin-off probes side by side (each imports SGLang)."""
    if not TINY_MODEL.is_dir():
        pytest.skip(f"needs {TINY_MODEL} (make engines)")
    tmp = tmp_path_factory.mktemp("plugin_process")
    config = tmp / "moesched.toml"
    config.write_text('[request.options]\nmax_wait_s = 600.0\n[request.preemption]\nenabled = true\n'
                      '[log]\nfirst_orderings = 3\n')
    placement = Placement(np.array([[7, 6, 5, 4, 3, 2, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7]] * NUM_LAYERS),
                          num_experts=NUM_EXPERTS, num_gpus=1)
    write_placement(tmp / "placement.json", placement)
    (tmp / "logical_count.json").write_text(json.dumps({"logical_count": logical_count.tolist()}))
    files = {"placement": str(tmp / "placement.json"),
             "logical_count": str(tmp / "logical_count.json"), "redundant": str(NUM_REDUNDANT)}
    on = _start({ENABLE_ENV: "1", CONFIG_ENV: str(config), "SGLANG_PLUGINS": None}, files)
    off = _start({ENABLE_ENV: None, CONFIG_ENV: None, "SGLANG_PLUGINS": None}, None)
    reports = {"on": _collect(*on), "off": _collect(*off)}
    reports["on"]["placement_written"] = placement.phy2log.tolist()
    return reports


@pytest.fixture(scope="module")
def plugin_on(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return reports["on"]


@pytest.fixture(scope="module")
def plugin_off(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return reports["off"]


def test_hooks_installed_in_spawned_process(plugin_on: dict[str, Any]) -> None:
    assert plugin_on["wrapped"] == {name: True for name in spawned_scheduler.HOOKED}
    assert plugin_on["stale_import_rebound"]  # `from common import release_kv_cache` sees the hook


def test_real_schedule_policy_orders_shortest_first(plugin_on: dict[str, Any]) -> None:
    assert plugin_on["order"] == ["short", "mid", "long"]
    assert plugin_on["policy_enum"] == "fcfs"  # SGLang still thinks it is fcfs
    assert any(line.startswith("moesched request order [sjf-aging] pass 1: 3 waiting")
               for line in plugin_on["log"])


def test_real_dp_controller_method_routes_to_idle_rank(plugin_on: dict[str, Any]) -> None:
    assert plugin_on["dispatched"] == [[], ["dp-req"]]  # rank 0 has 6000 tokens queued
    assert any("moesched dp dispatch [scored]: dp-req" in line for line in plugin_on["log"])


def test_eplb_algorithm_name_and_sglang_loaders(plugin_on: dict[str, Any],
                                                logical_count: np.ndarray) -> None:
    assert plugin_on["algorithm"] == "'moesched'"
    # a moesched placement file passes SGLang's own --init-expert-location loader unchanged
    assert plugin_on["placement"] == plugin_on["placement_written"]
    # a logical_count file with --eplb-algorithm moesched runs our solver inside SGLang
    expected, _, _ = rebalance(logical_count, NUM_EXPERTS + NUM_REDUNDANT,
                               NUM_EXPERTS + NUM_REDUNDANT, None, 1)
    assert plugin_on["eplb"] == expected.tolist()
    assert any(line.startswith("moesched eplb: placement #1 for 2 layers x 16 slots")
               for line in plugin_on["log"])


def test_switch_off_leaves_sglang_stock(plugin_off: dict[str, Any]) -> None:
    assert plugin_off["wrapped"] == {name: False for name in spawned_scheduler.HOOKED}
    assert plugin_off["order"] == ["long", "short", "mid"]  # SGLang's fcfs: arrival order
    assert plugin_off["dispatched"] == [[], ["dp-req"]]  # DPBudget: fewest total tokens
    assert plugin_off["algorithm"].startswith("KeyError")
    assert plugin_off["log"] == []
