"""The learnt-headroom hook against the real SGLang 0.5.23 classes: finished requests set the
clip that ``PrefillAdder`` sizes its admission headroom with."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("sglang")
pytestmark = pytest.mark.sglang

import sglang_objects as so  # noqa: E402
from sglang.srt.managers import schedule_policy  # noqa: E402
from sglang.srt.managers.schedule_batch import FINISH_ABORT, FINISH_LENGTH  # noqa: E402
from sglang.srt.managers.schedule_policy import PrefillAdder  # noqa: E402
from sglang.srt.plugins.hook_registry import HookRegistry, HookType  # noqa: E402

from request_sched.headroom import LearntHeadroom  # noqa: E402
from sglang_patches.hooks.headroom import RELEASE_KV_CACHE, HeadroomHook  # noqa: E402


def finished(rid: str, output_tokens: int, reason: object) -> object:
    req = so.waiting_req(rid, 32, max_new_tokens=8000)
    req.output_ids.extend(range(output_tokens))
    req.finished_reason = reason
    return req


def test_finished_outputs_set_the_clip_prefill_adder_reads(monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(schedule_policy, "CLIP_MAX_NEW_TOKENS", 4096)  # restored afterwards
    adder = object.__new__(PrefillAdder)
    adder.new_token_ratio = 0.5
    running = so.waiting_req("running", 32, max_new_tokens=8000)
    assert adder._get_running_request_total_token_offset(running) == 4096 * 0.5  # stock clip
    hook = HeadroomHook(LearntHeadroom(quantile=0.9, warmup=10, refresh_every=10, floor_tokens=16))
    with caplog.at_level(logging.INFO, logger="moesched.sglang"):
        for i in range(10):
            hook.after_release(None, finished(f"a{i}", 20 * (i + 1), FINISH_ABORT()), None)
        assert schedule_policy.CLIP_MAX_NEW_TOKENS == 4096  # aborted requests teach nothing
        for i in range(10):
            hook.after_release(None, finished(f"d{i}", 20 * (i + 1), FINISH_LENGTH(length=20 * (i + 1))), None)
    assert schedule_policy.CLIP_MAX_NEW_TOKENS == 180  # 0.9 quantile of 20, 40, ..., 200
    assert adder._get_running_request_total_token_offset(running) == 180 * 0.5
    assert "moesched headroom: CLIP_MAX_NEW_TOKENS 4096 -> 180 (q=0.9 over 10 finished)" in caplog.text


def test_a_fault_keeps_the_clip_and_is_logged(monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(schedule_policy, "CLIP_MAX_NEW_TOKENS", 4096)
    hook = HeadroomHook(LearntHeadroom(warmup=1))
    with caplog.at_level(logging.ERROR, logger="moesched.sglang"):
        hook.after_release(None, object(), None)  # not a Req
    assert schedule_policy.CLIP_MAX_NEW_TOKENS == 4096 and "headroom hook failed" in caplog.text


def test_registered_after_release_kv_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(HookRegistry._hooks, RELEASE_KV_CACHE, [])
    hook = HeadroomHook(LearntHeadroom())
    hook.register()
    assert [(t, h) for t, h, _ in HookRegistry._hooks[RELEASE_KV_CACHE]] == [(HookType.AFTER, hook.after_release)]
