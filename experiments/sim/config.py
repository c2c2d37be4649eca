"""Knobs of a simulated engine and cluster."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from perf_model.batch import MoeFactors, StepTimeModel
from perf_model.request_overhead import RequestOverhead
from request_sched.queue import RequestQueue


#: how a step's prefill is formed: "admission" = vLLM V1 (admitted requests continue first, in
#: admission order; the policy orders admission only), "policy" = SGLang 0.5.23 (each prefill
#: batch is taken from the waiting queue in policy order; see :mod:`experiments.sim.engine`)
PrefillOrder = Literal["admission", "policy"]
PREFILL_ORDERS: tuple[str, ...] = ("admission", "policy")


class PrefillBudget(Protocol):
    """Per-step prefill token budget (e.g. :class:`request_sched.token_budget.SloTokenBudget`)."""

    def budget(self, decode_seqs: int, kv_context_tokens: int, *, limit: int) -> int:
        """Prefill tokens the next step may add to ``decode_seqs`` decoding sequences that hold
        ``kv_context_tokens`` KV tokens (0 <= result <= ``limit``, the step's own token limit)."""
        ...


@dataclass(frozen=True)
class EngineConfig:
    """One engine's continuous-batching limits (vLLM / SGLang equivalents in brackets).

    Attributes:
        max_running: requests in the running batch at most [max_num_seqs / max_running_requests].
        max_batched_tokens: tokens per step (decode tokens + prefill chunk tokens)
            [max_num_batched_tokens / chunked_prefill_size].
        kv_capacity_tokens: KV-cache capacity in tokens [num_gpu_blocks * block_size /
            max_total_tokens]; requests with input + output above it fail.
        prefix_caching: reuse cached prompt blocks [enable_prefix_caching / radix cache].
        admit_whole_prompt: admit a request only if the KV cache can hold its whole uncached
            prompt (SGLang's admission; avoids preempting half-prefilled requests); False admits
            when the first chunk fits (vLLM V1).
        rematch_waiting_max: re-match the waiting requests' cached prefixes each step (so
            ``WaitingRequest.cached_tokens`` is current for cache-aware policies) while the queue
            holds at most this many requests (SGLang's lpm stops matching above 128).
        budget: optional per-step prefill budget; a step then prefills at most
            ``budget.budget(..., limit=max_batched_tokens - decode_seqs)`` tokens.
        prefill_order: ``"admission"`` (vLLM V1: every step carries the decodes; unfinished
            prefills continue first, in admission order, then waiting requests are admitted in
            policy order) or ``"policy"`` (SGLang 0.5.23: a request waits until a prefill batch
            takes it; each prefill batch is the one chunked request, then waiting requests in
            policy order; a step with a prefill batch runs before the decodes).
        mixed_chunk: ``"policy"`` order only: decoding requests join prefill steps
            [``--enable-mixed-chunk``]; False (SGLang's default) makes them wait for each prefill
            step. ``"admission"`` order always mixes (vLLM V1).
        decode_reservation: ``"policy"`` order only: SGLang's admission headroom for the tokens
            running requests will still decode (:mod:`experiments.sim.decode_reservation`): a
            request is admitted only if its uncached prompt plus its clipped ``max_new_tokens``
            fit beside ``new_token_ratio`` x the running requests' clipped remaining
            ``max_new_tokens``. False: room for the uncached prompt (or first chunk) suffices.
        learnt_headroom: with ``decode_reservation``, clip the expected future output tokens at a
            quantile of this engine's recent outputs (:class:`request_sched.headroom.LearntHeadroom`,
            what the moesched plugin sets SGLang's ``CLIP_MAX_NEW_TOKENS`` to) instead of SGLang's
            constant 4,096.
        deferred_output: a step's tokens reach the output only when the step that started right
            after it ends (at its own end if the engine then idles): SGLang 0.5.23's overlap
            scheduler (``event_loop_overlap``, on unless ``--disable-overlap-schedule``)
            processes a batch's results after launching the next batch, and on a CPU, where the
            launch runs the forward pass synchronously, after that batch has run. Only token
            times move; admission and finishing stay at step ends.
        request_overhead: per-request latency outside engine steps (HTTP, tokenization, IPC,
            streaming; :mod:`perf_model.request_overhead`): a request enters the waiting queue
            ``enqueue_s`` after it was sent, and every token reaches the client ``response_s``
            after its step ends. Default 0 (the GPU presets have no cited figure).
    """

    max_running: int = 256
    max_batched_tokens: int = 8192
    kv_capacity_tokens: int = 160_000
    prefix_caching: bool = True
    admit_whole_prompt: bool = True
    rematch_waiting_max: int = 128
    budget: PrefillBudget | None = None
    prefill_order: PrefillOrder = "admission"
    mixed_chunk: bool = False
    decode_reservation: bool = False
    learnt_headroom: bool = False
    deferred_output: bool = False
    request_overhead: RequestOverhead = field(default_factory=RequestOverhead)

    def __post_init__(self) -> None:
        if self.max_running < 1:
            raise ValueError(f"max_running: expected >= 1, got {self.max_running}")
        if self.max_batched_tokens < 1:
            raise ValueError(f"max_batched_tokens: expected >= 1, got {self.max_batched_tokens}")
        if self.kv_capacity_tokens < 1:
            raise ValueError(f"kv_capacity_tokens: expected >= 1, got {self.kv_capacity_tokens}")
        if self.prefill_order not in PREFILL_ORDERS:
            raise ValueError(f"prefill_order: expected one of {', '.join(PREFILL_ORDERS)}, "
                             f"got {self.prefill_order!r}")
        if self.decode_reservation and self.prefill_order != "policy":
            raise ValueError("decode_reservation: SGLang's admission headroom needs prefill_order='policy'")
        if self.learnt_headroom and not self.decode_reservation:
            raise ValueError("learnt_headroom: clips SGLang's admission headroom, needs decode_reservation")


@dataclass(frozen=True)
class ClusterConfig:
    """The cluster around the engines.

    Attributes:
        engines: number of engines.
        engine: limits of every engine.
        queue_factory: builds one waiting queue per engine (e.g. ``lambda: create_queue("fcfs")``).
        load_refresh_s: how often the dispatcher's engine-load snapshots refresh (seconds);
            0 = always current.
        moe: placement factors of every engine (None: no expert-parallel terms).
        step_models: one step model per engine (heterogeneous engines, e.g. a straggler); None:
            every engine runs the model passed to :func:`~experiments.sim.cluster.simulate`.
    """

    engines: int
    engine: EngineConfig
    queue_factory: Callable[[], RequestQueue]
    load_refresh_s: float = 0.0
    moe: MoeFactors | None = None
    step_models: Sequence[StepTimeModel] | None = None

    def __post_init__(self) -> None:
        if self.engines < 1:
            raise ValueError(f"engines: expected >= 1, got {self.engines}")
        if self.step_models is not None and len(self.step_models) != self.engines:
            raise ValueError(f"step_models: expected one per engine ({self.engines}), got {len(self.step_models)}")
        if self.load_refresh_s < 0:
            raise ValueError(f"load_refresh_s: expected >= 0, got {self.load_refresh_s}")
