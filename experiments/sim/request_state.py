"""Per-request state the simulator keeps: progress on its engine and what the record needs.

Token times are not stored per token: a request produces one token per engine step while it
decodes, so each decoding stretch is kept as a ``(first_step, last_step)`` range of its engine's
steps, and token times are read from the engine's step-end times when results are built.
"""

from __future__ import annotations

from engine_dispatch.types import DispatchRequest
from experiments.sim.prefix_cache import CacheNode
from experiments.workloads.types import TraceRequest
from request_sched.types import WaitingRequest

#: ``max_tokens`` a simulated client sends with every request, in tokens. Real clients send a fixed
#: cap (OpenAI-style APIs default to the model's limit), not the length the answer will turn out to
#: have; handing policies the true output length as the cap would leak it to any predictor capped by
#: ``max_new_tokens`` (e.g. sjf-aging's).
DEFAULT_MAX_TOKENS_CAP = 4096


class SimRequest:
    """One request in the simulation.

    Attributes:
        trace: the workload's request.
        dispatch: what the dispatcher was shown.
        waiting: what the request policy sees (kept across preemptions).
        engine_id: engine the dispatcher chose (-1 before dispatch).
        generated: output tokens produced before the current decoding stretch.
        prompt_tokens: tokens to prefill on (re)admission: the prompt, plus the tokens generated
            before a preemption (recompute).
        prefill_pos: tokens of ``prompt_tokens`` already in KV (cached + computed).
        cached_tokens: tokens served from the prefix cache at the latest admission.
        own_tokens: KV tokens this request holds outside the prefix cache (while prefilling; while
            decoding add the steps decoded since ``decode_from_step``).
        node: deepest pinned prefix-cache node, or None.
        decode_from_step: engine step whose end produced the first token of the current stretch
            (-1 while waiting or prefilling).
        decode_from_tick: the engine's completed decode steps at that step's end; the request's
            later tokens come at the following decode steps.
        epoch: bumped on preemption, to invalidate the engine's finish-heap entry.
        segments: ``(first_step, last_step)`` decoding stretches, in engine steps.
        preemptions: times the request was preempted.
        finished, failed: terminal states; ``error`` explains a failure.
        hit_tokens: prompt tokens served from the prefix cache, summed over admissions.
    """

    __slots__ = ("trace", "dispatch", "waiting", "engine_id", "generated", "prompt_tokens",
                 "prefill_pos", "cached_tokens", "own_tokens", "node", "decode_from_step", "decode_from_tick", "epoch",
                 "segments", "preemptions", "finished", "failed", "error", "hit_tokens",
                 "pending_estimate")

    def __init__(self, trace: TraceRequest, max_tokens_cap: int | None = DEFAULT_MAX_TOKENS_CAP) -> None:
        """``max_tokens_cap``: the ``max_tokens`` the client sent; a request the trace shows
        generating more must have been sent more, so policies see ``max(cap, output_tokens)``.
        None is the oracle ablation (cap = the true output length); label runs that use it."""
        self.trace = trace
        cap = trace.output_tokens if max_tokens_cap is None else max(max_tokens_cap, trace.output_tokens)
        self.dispatch = DispatchRequest(
            request_id=trace.request_id, prompt_tokens=trace.input_tokens,
            block_hashes=trace.prefix_blocks, session_id=trace.session_id,
            max_new_tokens=cap, priority=trace.priority)
        self.waiting = WaitingRequest(
            request_id=trace.request_id, enqueue_s=trace.arrival_s,
            prompt_tokens=trace.input_tokens, max_new_tokens=cap,
            priority=trace.priority, workload_class=trace.workload_class,
            prefix_blocks=trace.prefix_blocks, host_ref=self)
        self.engine_id = -1
        self.generated = 0
        self.prompt_tokens = trace.input_tokens
        self.prefill_pos = 0
        self.cached_tokens = 0
        self.own_tokens = 0
        self.node: CacheNode | None = None
        self.decode_from_step = -1
        self.decode_from_tick = 0
        self.epoch = 0
        self.segments: list[tuple[int, int]] = []
        self.preemptions = 0
        self.finished = False
        self.failed = False
        self.error = ""
        self.hit_tokens = 0
        self.pending_estimate = 0
