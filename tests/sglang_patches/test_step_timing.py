"""Step-timing hook without SGLang: duck-typed batches and schedulers, a fake clock."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from enum import Enum
from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from perf_model.batch import BatchShape
from perf_model.online import OnlineStepModel
from perf_model.presets import preset_model
from sglang_patches.hooks.step_timing import StepRecorder, StepTimingHooks, batch_shape


class Mode(Enum):  # the names SGLang's ForwardMode uses
    EXTEND = 1
    DECODE = 2
    MIXED = 3
    IDLE = 4
    TARGET_VERIFY = 5


class SeqLens(list):
    def sum(self) -> int:  # what a torch tensor offers
        return sum(self)


@dataclass
class FakeBatch:
    forward_mode: Mode
    reqs: list[Any] = field(default_factory=list)
    prefix_lens: list[int] | None = None
    extend_lens: list[int] | None = None
    decoding_reqs: list[Any] | None = None
    seq_lens_cpu: SeqLens | None = None
    seq_lens_sum: int | None = None


def decode_batch(seq_lens: list[int]) -> FakeBatch:
    return FakeBatch(Mode.DECODE, reqs=[object() for _ in seq_lens], seq_lens_cpu=SeqLens(seq_lens))


def mixed_batch(prefill: list[tuple[int, int]], decode_seq_lens: list[int]) -> FakeBatch:
    """``prefill``: (prefix, extend) per prefilling row; decode rows appended as SGLang's
    ``mix_with_running`` does (prefix = seq_len - 1, extend 1)."""
    running = [object() for _ in decode_seq_lens]
    return FakeBatch(Mode.MIXED if decode_seq_lens else Mode.EXTEND,
                     reqs=[object() for _ in prefill] + running,
                     prefix_lens=[p for p, _ in prefill] + [s - 1 for s in decode_seq_lens],
                     extend_lens=[n for _, n in prefill] + [1] * len(decode_seq_lens),
                     decoding_reqs=running or None)


def test_decode_batch_counts_sequences_and_context():
    assert batch_shape(decode_batch([10, 20, 30])) == BatchShape(decode_seqs=3, kv_context_tokens=60)


def test_decode_batch_without_cpu_lengths_uses_seq_lens_sum():
    batch = FakeBatch(Mode.DECODE, reqs=[object(), object()], seq_lens_sum=42)
    assert batch_shape(batch) == BatchShape(decode_seqs=2, kv_context_tokens=42)


def test_extend_batch_is_all_prefill_with_exact_attention_pairs():
    shape = batch_shape(mixed_batch([(0, 100), (64, 36)], []))
    assert shape == BatchShape(prefill_tokens=136, cached_prefill_tokens=64, decode_seqs=0,
                               kv_context_tokens=200,
                               prefill_attention_pairs=100 * 50.5 + 36 * (64 + 18.5))


def test_mixed_batch_splits_prefill_rows_from_appended_decode_rows():
    shape = batch_shape(mixed_batch([(0, 50)], [11, 21]))
    assert (shape.prefill_tokens, shape.cached_prefill_tokens, shape.decode_seqs) == (50, 0, 2)
    assert shape.kv_context_tokens == 50 + 11 + 21
    assert shape.prefill_attention_pairs == 50 * 25.5


def test_decode_converted_to_extend_is_all_decode_rows():
    batch = mixed_batch([(9, 1), (19, 1)], [])
    batch.decoding_reqs = batch.reqs  # convert_decode_to_extend (DP attention)
    assert batch_shape(batch) == BatchShape(decode_seqs=2, kv_context_tokens=30)


def test_modes_the_model_does_not_describe_are_not_shaped():
    assert batch_shape(FakeBatch(Mode.IDLE)) is None
    assert batch_shape(FakeBatch(Mode.TARGET_VERIFY)) is None


@given(st.lists(st.tuples(st.integers(0, 4000), st.integers(1, 4000)), max_size=8),
       st.lists(st.integers(1, 4000), max_size=16))
def test_shape_conserves_tokens_and_context(prefill, decode_seq_lens):
    batch = mixed_batch(prefill, decode_seq_lens)
    shape = batch_shape(batch)
    assert shape.tokens == sum(batch.extend_lens)  # SGLang's extend_num_tokens
    assert shape.kv_context_tokens == sum(batch.prefix_lens) + sum(batch.extend_lens)
    assert shape.decode_seqs == len(decode_seq_lens)
    assert shape.cached_prefill_tokens == sum(p for p, _ in prefill)


class FakeScheduler:  # weak-referenceable, like SGLang's Scheduler
    pass


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def recorder(log_interval: int = 1000, steps_file: io.StringIO | None = None
             ) -> tuple[StepRecorder, Clock, list[tuple[BatchShape, float]]]:
    clock = Clock()
    model = OnlineStepModel(preset_model("qwen3-30b-a3b-h100"))
    seen: list[tuple[BatchShape, float]] = []
    original = model.observe

    def spy(batch: BatchShape, seconds: float, moe=None) -> None:
        seen.append((batch, seconds))
        original(batch, seconds, moe)

    model.observe = spy  # type: ignore[method-assign]
    return StepRecorder(model, log_interval, steps_file, clock), clock, seen


def test_a_step_lasts_from_its_launch_to_the_next_launch():
    rec, clock, seen = recorder()
    rec.on_launch(decode_batch([5, 5]))
    clock.now = 0.025
    rec.on_launch(decode_batch([6, 6]))
    assert seen == [(BatchShape(decode_seqs=2, kv_context_tokens=10), 0.025)]
    assert rec.timed == 1


def test_an_idle_pass_drops_the_pending_step():
    rec, clock, seen = recorder()
    rec.on_launch(decode_batch([5]))
    clock.now = 0.01
    rec.on_idle()
    clock.now = 5.0
    rec.on_launch(decode_batch([5]))
    assert seen == []


def test_an_undescribed_batch_is_counted_and_not_timed():
    rec, clock, seen = recorder()
    rec.on_launch(FakeBatch(Mode.TARGET_VERIFY))
    clock.now = 1.0
    rec.on_launch(decode_batch([5]))
    assert seen == [] and rec.untimed == 1


def test_steps_file_rows_hold_the_prediction_made_before_the_step():
    out = io.StringIO()
    rec, clock, _ = recorder(steps_file=out)
    batch = decode_batch([100] * 4)
    predicted = rec.model.step_seconds(batch_shape(batch))
    rec.on_launch(batch)
    clock.now = 3 * predicted
    rec.on_launch(decode_batch([101] * 4))
    row = json.loads(out.getvalue())
    assert row["predicted_s"] == predicted and row["step_s"] == 3 * predicted
    assert (row["decode_seqs"], row["kv_context_tokens"], row["end_s"]) == (4, 400, 3 * predicted)
    assert row["scale"] > 1.0  # the step was slower than predicted: the fast scale moved up
    assert row["hook_s"] == 0.0  # the fake clock does not advance inside the hook


def test_error_line_every_interval(caplog):
    rec, clock, _ = recorder(log_interval=2)
    with caplog.at_level(logging.INFO, logger="moesched.sglang"):
        for i in range(5):
            clock.now = 0.01 * i
            rec.on_launch(decode_batch([8]))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[0].startswith("moesched step model: timed=2 ")
    assert "mape64=" in lines[0] and "scale=" in lines[0] and "drifts=" in lines[0]


def test_hooks_keep_one_recorder_per_scheduler_and_call_sglang():
    made: list[StepRecorder] = []

    def make() -> StepRecorder:
        made.append(recorder()[0])
        return made[-1]

    hooks = StepTimingHooks(make)
    a, b = FakeScheduler(), FakeScheduler()
    calls = []

    def run_batch(scheduler, batch):
        calls.append(batch)
        return "result"

    assert hooks.run_batch(run_batch, a, decode_batch([1])) == "result"
    hooks.run_batch(run_batch, b, decode_batch([1]))
    hooks.run_batch(run_batch, a, decode_batch([2]))
    assert len(calls) == 3 and len(made) == 2
    plan = SimpleNamespace(batch_to_run=None)
    assert hooks.get_next_batch_to_run(lambda scheduler, *args: plan, a, None, None) is plan
    assert hooks.recorders[a]._pending is None and hooks.recorders[b]._pending is not None


def test_a_fault_in_the_recorder_keeps_sglang_running(caplog):
    hooks = StepTimingHooks(lambda: recorder()[0])
    scheduler = FakeScheduler()
    bad = SimpleNamespace(forward_mode=Mode.DECODE, reqs=None, seq_lens_cpu=None, seq_lens_sum=0)
    with caplog.at_level(logging.ERROR, logger="moesched.sglang"):
        assert hooks.run_batch(lambda s, batch: "ran", scheduler, bad) == "ran"
    assert scheduler not in hooks.recorders
    assert "step timing failed" in caplog.text
