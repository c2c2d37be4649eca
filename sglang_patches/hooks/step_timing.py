"""Hook: time every SGLang scheduler step and keep an online step model current (issue 8).

Two AROUND hooks on ``Scheduler`` (``srt/managers/scheduler.py``, SGLang 0.5.23):

* ``run_batch(batch)``: on entry, the step that started at the previous ``run_batch`` entry ends;
  its time and :class:`~perf_model.batch.BatchShape` go to
  :meth:`~perf_model.online.OnlineStepModel.observe`, after the model predicted it (the
  one-step-ahead error). Then this batch's shape is read (before SGLang runs it) and its clock
  starts.
* ``get_next_batch_to_run``: when it returns no batch the engine is idle, so the pending step is
  dropped (its interval would include idle time): the last step of every busy period is not timed.

A step is therefore one busy scheduler iteration, run_batch entry to the next run_batch entry:
the forward pass, sampling, result processing (``process_batch_result``), receiving requests and
forming the next batch. This is the same in both event loops (``event_loop_normal`` and
``event_loop_overlap``, where ``run_batch`` launches and the previous batch's results are processed
after it): in a busy engine the interval between launches is the step time.

``ScheduleBatch`` -> ``BatchShape`` (:func:`batch_shape`; fields read from the 0.5.23 source):

* ``DECODE``: ``decode_seqs = len(reqs)``, ``kv_context_tokens = sum(seq_lens_cpu)`` (after
  ``prepare_for_decode``, so the new token is counted).
* ``EXTEND`` / ``MIXED``: rows ``i`` have ``prefix_lens[i]`` tokens in the KV cache and compute
  ``extend_lens[i]`` new ones. In a ``MIXED`` batch ``mix_with_running`` appends the running
  requests as the last ``len(decoding_reqs)`` rows (extend length 1); an ``EXTEND`` batch whose
  ``decoding_reqs is reqs`` (``convert_decode_to_extend``, DP attention) is all decode rows.
  Prefill rows give ``prefill_tokens = sum(extend)``, ``cached_prefill_tokens = sum(prefix)``,
  ``prefill_attention_pairs = sum(extend * (prefix + (extend + 1) / 2))``; decode rows give
  ``decode_seqs``; ``kv_context_tokens = sum(prefix + extend)`` over all rows.
* Anything else (idle, speculative verify, split prefill, diffusion): ``None``, not timed.

The error is set on Prometheus gauges every 16 timed steps when SGLang's metrics are on
(:mod:`sglang_patches.step_metrics`, ``moesched:step_model_mape`` etc. on ``/metrics``) and logged
every ``log_interval_steps`` timed steps (``moesched step model: ...``: the
model's 64-step one-step-ahead MAPE, scale, drifts, refits) and, with ``steps_file``, one JSON line
per timed step is appended (flushed per line) for offline analysis: ``wall_s`` and ``end_s``
(``time.time`` and the recorder's clock, ``time.perf_counter`` by default, at the step's end),
``pid``, ``step_s``, ``predicted_s`` (before the step was observed), the shape fields,
the model's ``scale``, ``mape`` and ``drifts`` after it, and ``hook_s`` (the hook's own time at the
step's start, part of ``step_s``).
"""

from __future__ import annotations

import json
import logging
import os
import time
import weakref
from collections.abc import Callable
from typing import IO, Any

from perf_model.batch import BatchShape
from perf_model.online import OnlineStepModel
from sglang_patches.step_metrics import StepModelGauges

RUN_BATCH = "sglang.srt.managers.scheduler.Scheduler.run_batch"
GET_NEXT_BATCH = "sglang.srt.managers.scheduler.Scheduler.get_next_batch_to_run"

logger = logging.getLogger("moesched.sglang")
#: timed steps between updates of the Prometheus gauges (each update writes 7 values)
GAUGE_INTERVAL_STEPS = 16


def batch_shape(batch: Any) -> BatchShape | None:
    """The :class:`BatchShape` of an SGLang ``ScheduleBatch`` about to run (mapping in the module
    docstring), or None for a forward mode the step model does not describe."""
    mode = getattr(batch.forward_mode, "name", None)
    if mode == "DECODE":
        seq_lens = batch.seq_lens_cpu
        kv = int(seq_lens.sum()) if seq_lens is not None else int(batch.seq_lens_sum or 0)
        return BatchShape(decode_seqs=len(batch.reqs), kv_context_tokens=kv)
    if mode not in ("EXTEND", "MIXED"):
        return None
    prefix, extend = list(batch.prefix_lens), list(batch.extend_lens)
    decoding = batch.decoding_reqs
    if mode == "MIXED":
        n_decode = len(decoding) if decoding else 0
    else:
        n_decode = len(extend) if decoding is not None and decoding is batch.reqs else 0
    n_prefill = len(extend) - n_decode
    prefill_tokens = sum(extend[:n_prefill])
    cached = sum(prefix[:n_prefill])
    pairs = sum(n * (c + (n + 1) / 2) for c, n in zip(prefix[:n_prefill], extend[:n_prefill]))
    return BatchShape(prefill_tokens=prefill_tokens, cached_prefill_tokens=cached,
                      decode_seqs=n_decode, kv_context_tokens=sum(prefix) + sum(extend),
                      prefill_attention_pairs=float(pairs))


class StepRecorder:
    """One scheduler's online model, its pending step, its log line and its per-step file.

    Args:
        model: the online model this scheduler feeds.
        log_interval_steps: timed steps between error log lines.
        steps_file: open text file for one JSON row per timed step, or None.
        clock: seconds, monotonic (injectable for tests).
        gauges: Prometheus gauges set every :data:`GAUGE_INTERVAL_STEPS` timed steps, or None.
    """

    def __init__(self, model: OnlineStepModel, log_interval_steps: int,
                 steps_file: IO[str] | None = None,
                 clock: Callable[[], float] = time.perf_counter,
                 gauges: StepModelGauges | None = None) -> None:
        self.model = model
        self.log_interval_steps = log_interval_steps
        self.steps_file = steps_file
        self.gauges = gauges
        self._clock = clock
        self._pending: tuple[float, BatchShape, float] | None = None
        self.timed = 0
        self.untimed = 0  # batches whose forward mode the model does not describe

    def on_launch(self, batch: Any) -> None:
        """A batch is about to run: close the pending step, open this one.

        The hook's own time here (observing the previous step, reading this batch) falls inside
        the step it opens; it is kept with that step as ``hook_s``.
        """
        now = self._clock()
        if self._pending is not None:
            self._observe(*self._pending, now)
        shape = batch_shape(batch)
        if shape is None:
            self.untimed += 1
            self._pending = None
        else:
            self._pending = (now, shape, self._clock() - now)

    def on_idle(self) -> None:
        """The scheduler found nothing to run: the pending step's interval would include idle time."""
        self._pending = None

    def _observe(self, start: float, shape: BatchShape, hook_s: float, end: float) -> None:
        seconds = end - start
        predicted = self.model.step_seconds(shape)
        self.model.observe(shape, seconds)
        self.timed += 1
        if self.steps_file is not None:
            row = {"wall_s": time.time(), "end_s": end, "pid": os.getpid(), "step_s": seconds,
                   "predicted_s": predicted, "prefill_tokens": shape.prefill_tokens,
                   "cached_prefill_tokens": shape.cached_prefill_tokens,
                   "decode_seqs": shape.decode_seqs, "kv_context_tokens": shape.kv_context_tokens,
                   "prefill_attention_pairs": shape.prefill_attention_pairs,
                   "scale": self.model.scale, "mape": self.model.mape, "drifts": self.model.drifts,
                   "hook_s": hook_s}
            self.steps_file.write(json.dumps(row) + "\n")
            self.steps_file.flush()
        if self.gauges is not None and self.timed % GAUGE_INTERVAL_STEPS == 0:
            self.gauges.update(self.model.metrics())
        if self.timed % self.log_interval_steps == 0:
            logger.info("%s", self.summary())

    def summary(self) -> str:
        """One log line: the model's current error and counters."""
        m = self.model.metrics()
        return (f"moesched step model: timed={self.timed} untimed={self.untimed} "
                f"mape64={m['mape']:.3f} scale={m['scale']:.3f} drifts={m['drifts']} "
                f"refits accepted={m['refits_accepted']} rejected={m['refits_rejected']} "
                f"bad_timings={m['rejected']}")


class StepTimingHooks:
    """The two AROUND hooks, with one :class:`StepRecorder` per ``Scheduler``.

    Args:
        make_recorder: builds the recorder of a new scheduler.
    """

    def __init__(self, make_recorder: Callable[[], StepRecorder]) -> None:
        self._make_recorder = make_recorder
        self.recorders: weakref.WeakKeyDictionary[Any, StepRecorder] = weakref.WeakKeyDictionary()

    def _recorder(self, scheduler: Any) -> StepRecorder:
        recorder = self.recorders.get(scheduler)
        if recorder is None:
            recorder = self.recorders[scheduler] = self._make_recorder()
        return recorder

    def run_batch(self, original: Callable, scheduler: Any, batch: Any, *args: Any,
                  **kwargs: Any) -> Any:
        """AROUND ``Scheduler.run_batch``: time the previous step, start this one, run SGLang's."""
        try:
            self._recorder(scheduler).on_launch(batch)
        except Exception:  # a plugin fault must not stop the scheduler
            logger.exception("moesched step timing failed; this scheduler's model is reset")
            self.recorders.pop(scheduler, None)
        return original(scheduler, batch, *args, **kwargs)

    def get_next_batch_to_run(self, original: Callable, scheduler: Any, *args: Any,
                              **kwargs: Any) -> Any:
        """AROUND ``Scheduler.get_next_batch_to_run``: an empty plan means the engine is idle."""
        plan = original(scheduler, *args, **kwargs)
        if plan.batch_to_run is None:
            recorder = self.recorders.get(scheduler)
            if recorder is not None:
                recorder.on_idle()
        return plan

    def register(self) -> None:
        """Register both hooks with SGLang's ``HookRegistry`` (applied by ``load_plugins``)."""
        from sglang.srt.plugins.hook_registry import HookRegistry, HookType

        HookRegistry.register(RUN_BATCH, self.run_batch, HookType.AROUND)
        HookRegistry.register(GET_NEXT_BATCH, self.get_next_batch_to_run, HookType.AROUND)
