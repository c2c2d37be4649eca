"""The step-timing hook against SGLang 0.5.23's own classes: ``ScheduleBatch`` with its real
``ForwardMode`` and ``Req`` objects, and the hook targets' signatures (the process-wide patching
through ``load_plugins`` is the same mechanism test_plugin_process.py covers)."""

from __future__ import annotations

import inspect

import pytest

pytest.importorskip("sglang")
pytestmark = pytest.mark.sglang

import torch  # noqa: E402

import sglang_objects as so  # noqa: E402
from sglang.srt.managers.schedule_batch import NextBatchPlan, ScheduleBatch  # noqa: E402
from sglang.srt.managers.scheduler import Scheduler  # noqa: E402
from sglang.srt.model_executor.forward_batch_info import ForwardMode  # noqa: E402

from perf_model.batch import BatchShape  # noqa: E402
from sglang_patches.hooks.step_timing import GET_NEXT_BATCH, RUN_BATCH, batch_shape  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def runtime() -> None:
    if not so.TINY_MODEL.is_dir():
        pytest.skip(f"needs {so.TINY_MODEL} (make engines)")
    so.publish_server_args()


def test_hook_targets_exist_with_the_expected_signatures() -> None:
    assert RUN_BATCH == "sglang.srt.managers.scheduler.Scheduler.run_batch"
    assert list(inspect.signature(Scheduler.run_batch).parameters)[:2] == ["self", "batch"]
    assert GET_NEXT_BATCH.endswith("Scheduler.get_next_batch_to_run")
    assert inspect.signature(Scheduler.get_next_batch_to_run).return_annotation in (NextBatchPlan, "NextBatchPlan")
    assert "batch_to_run" in NextBatchPlan.__struct_fields__


def test_real_decode_batch() -> None:
    reqs = [so.waiting_req(f"r{i}", 10 + i) for i in range(3)]
    batch = ScheduleBatch(reqs=reqs, forward_mode=ForwardMode.DECODE,
                          seq_lens_cpu=torch.tensor([11, 12, 13], dtype=torch.int64))
    assert batch_shape(batch) == BatchShape(decode_seqs=3, kv_context_tokens=36)


def test_real_mixed_batch_as_mix_with_running_leaves_it() -> None:
    prefill = [so.waiting_req("p0", 100), so.waiting_req("p1", 80)]
    running = [so.waiting_req("d0", 20), so.waiting_req("d1", 30)]
    batch = ScheduleBatch(reqs=prefill + running, forward_mode=ForwardMode.MIXED,
                          prefix_lens=[0, 48, 20, 30], extend_lens=[100, 32, 1, 1],
                          decoding_reqs=running)
    assert batch_shape(batch) == BatchShape(
        prefill_tokens=132, cached_prefill_tokens=48, decode_seqs=2, kv_context_tokens=232,
        prefill_attention_pairs=100 * 50.5 + 32 * (48 + 16.5))


def test_real_extend_batch_and_undescribed_modes() -> None:
    reqs = [so.waiting_req("p0", 64)]
    batch = ScheduleBatch(reqs=reqs, forward_mode=ForwardMode.EXTEND, prefix_lens=[0],
                          extend_lens=[64])
    assert batch_shape(batch) == BatchShape(prefill_tokens=64, kv_context_tokens=64,
                                            prefill_attention_pairs=64 * 32.5)
    for mode in (ForwardMode.IDLE, ForwardMode.TARGET_VERIFY):
        assert batch_shape(ScheduleBatch(reqs=reqs, forward_mode=mode)) is None
