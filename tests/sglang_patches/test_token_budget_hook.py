"""The SLO token-budget hook against the real SGLang 0.5.23 classes: a scheduling pass's prefill
limits are capped at the budget of its decode batch, and only lowered."""

from __future__ import annotations

import logging
from array import array

import pytest

pytest.importorskip("sglang")
pytestmark = pytest.mark.sglang

import sglang_objects as so  # noqa: E402
from sglang.srt.managers.schedule_batch import ScheduleBatch  # noqa: E402
from sglang.srt.managers.schedule_policy import PrefillAdder  # noqa: E402
from sglang.srt.plugins.hook_registry import HookRegistry, HookType  # noqa: E402

from perf_model.model_file import resolve_model  # noqa: E402
from perf_model.structural import ModelStructure, StepCoefficients, StructuralStepModel  # noqa: E402
from request_sched.token_budget import SloTokenBudget  # noqa: E402
from sglang_patches.decision_log import DecisionLog  # noqa: E402
from sglang_patches.hooks.token_budget import PREFILL_ADDER_INIT, TokenBudgetHook  # noqa: E402

MODEL = resolve_model("qwen3-30b-a3b-h100")


def adder(running: int, rem_input: int = 16384, rem_chunk: int | None = 8192) -> PrefillAdder:
    """A ``PrefillAdder`` as SGLang left it after ``__init__``, over ``running`` decoding requests
    of 1,000 context tokens each."""
    batch = object.__new__(ScheduleBatch)
    batch.reqs = []
    for i in range(running):
        req = so.waiting_req(f"r{i}", 900)
        req.output_ids = array("q", range(100))
        batch.reqs.append(req)
    made = object.__new__(PrefillAdder)
    made.running_batch, made.rem_input_tokens, made.rem_chunk_tokens = batch, rem_input, rem_chunk
    return made


def test_limits_capped_at_the_budget_of_the_decode_batch(caplog: pytest.LogCaptureFixture) -> None:
    rule = SloTokenBudget(MODEL, 0.030, max_budget=65536, min_budget=256)
    hook = TokenBudgetHook(rule, DecisionLog(5, 0))
    made = adder(running=64)
    expected = rule.budget(64, 64 * 1000)
    assert 256 <= expected < 8192  # the SLO binds at this batch (else the test shows nothing)
    with caplog.at_level(logging.INFO, logger="moesched.sglang"):
        hook.after_init(None, made)
    assert made.rem_input_tokens == expected and made.rem_chunk_tokens == expected
    assert rule.step_seconds(expected, 64, 64_000) <= 0.030
    assert "moesched token budget: 64 decoding (64000 KV tokens)" in caplog.text


def test_never_raises_sglang_limits_nor_touches_an_idle_pass() -> None:
    hook = TokenBudgetHook(SloTokenBudget(MODEL, 10.0, max_budget=65536), DecisionLog(0, 0))
    loose = adder(running=4, rem_input=2048, rem_chunk=None)
    hook.after_init(None, loose)
    assert (loose.rem_input_tokens, loose.rem_chunk_tokens) == (2048, None)
    tight = TokenBudgetHook(SloTokenBudget(MODEL, 1e-6, max_budget=65536, min_budget=256), DecisionLog(0, 0))
    idle = adder(running=0)
    tight.after_init(None, idle)
    assert (idle.rem_input_tokens, idle.rem_chunk_tokens) == (16384, 8192)  # nothing decodes
    assert (tight.passes, tight.capped) == (1, 0)


def test_a_fault_keeps_sglang_limits(caplog: pytest.LogCaptureFixture) -> None:
    hook = TokenBudgetHook(SloTokenBudget(MODEL, 0.03), DecisionLog(0, 0))
    broken = object.__new__(PrefillAdder)  # no running_batch attribute
    with caplog.at_level(logging.ERROR, logger="moesched.sglang"):
        hook.after_init(None, broken)
    assert "token budget hook failed" in caplog.text


def test_registered_after_prefill_adder_init(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(HookRegistry._hooks, PREFILL_ADDER_INIT, [])
    hook = TokenBudgetHook(SloTokenBudget(MODEL, 0.03), DecisionLog(0, 0))
    hook.register()
    assert [(t, h) for t, h, _ in HookRegistry._hooks[PREFILL_ADDER_INIT]] == [(HookType.AFTER, hook.after_init)]


def test_leaves_the_limits_when_every_prefilling_step_breaks_the_slo() -> None:
    """SGLang's CPU backend: a step that prefills costs ~77 ms more than the decodes alone, above a
    30 ms SLO at any chunk, so cutting the chunk would only pay that cost more often."""
    cpu = StructuralStepModel(ModelStructure(), StepCoefficients(
        overhead_s=0.005, prefill_step_s=0.077, per_token_s=2e-5, per_sequence_s=3e-4))
    hook = TokenBudgetHook(SloTokenBudget(cpu, 0.030, max_budget=65536, min_budget=64), DecisionLog(0, 0))
    made = adder(running=16, rem_input=2048 - 16, rem_chunk=2048 - 16)
    hook.after_init(None, made)
    assert (made.rem_input_tokens, made.rem_chunk_tokens) == (2032, 2032)
    assert (hook.passes, hook.capped) == (1, 0)
