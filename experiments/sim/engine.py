"""One simulated engine: continuous batching with chunked prefill, a paged KV cache with a prefix
cache, and recompute preemption, in one of two step-forming modes (``EngineConfig.prefill_order``).

``"admission"``, vLLM V1's scheduler (:meth:`SimEngine.begin_step`):

1. every decoding request gets one token; if the KV cache cannot hold their new tokens (after
   evicting unpinned prefix blocks), the most recently admitted running request is preempted
   (recompute: its KV is dropped and it re-enters the waiting queue with its generated tokens
   appended to the prompt), until they fit;
2. partially prefilled requests continue in admission order, each with a chunk of what is left of
   the step's token budget (same preemption rule if their chunk does not fit);
3. if nothing was preempted, waiting requests are admitted in the policy's order while the budget,
   ``max_running`` and the KV cache allow (room for the whole uncached prompt, or only for its
   first chunk with ``admit_whole_prompt`` off; a request that does not fit stops admission). Its cached
   prefix (prefix-cache match on its block ids) is pinned and skipped.

``"policy"``, SGLang 0.5.23's scheduler (``srt/managers/scheduler.py``
``Scheduler.get_next_batch_to_run`` / ``_get_new_batch_prefill_raw``, ``srt/managers/
schedule_policy.py`` ``PrefillAdder.add_chunked_req`` / ``add_one_req``):

1. a prefill batch is formed first: the one unfinished chunked request continues
   (``add_chunked_req``), then waiting requests are taken in the policy's order
   (``calc_priority``, then ``PrefillAdder.add_one_req`` in queue order) while the chunk budget
   (``chunked_prefill_size`` = ``max_batched_tokens``), ``max_running`` and the KV cache allow;
   the last one taken may be chunked (one chunked request at most, as the budget is then spent);
2. a non-empty prefill batch is the step ("run prefill first if possible"); decoding requests
   wait during it unless ``mixed_chunk`` (``--enable-mixed-chunk``: the prefill budget shrinks
   by the decode count, ``PrefillAdder(num_mixed_decode_tokens=running_bs)``, and the decodes join
   when the KV cache holds their tokens, else they sit the step out, as ``check_decode_mem``);
3. with no prefill batch, the step decodes every running request, preempting the most recently
   admitted until their tokens fit (SGLang's ``retract_decode`` retracts the request with the
   fewest output tokens first; the newest admitted is the usual such request).

With ``decode_reservation`` admission also keeps SGLang's headroom for the tokens running
requests will still decode (:mod:`experiments.sim.decode_reservation`), clipped at SGLang's
4,096 tokens or, with ``learnt_headroom``, at a quantile of the engine's recent outputs
(:mod:`request_sched.headroom`); without it admission checks the KV room for the uncached prompt
as in the ``"admission"`` mode.

The step's :class:`~perf_model.batch.BatchShape` goes to the step model; :meth:`end_step` applies
it at the returned time: finished prefills emit their first token and insert their prompt blocks
into the prefix cache, decoding requests whose last token fell on this step finish.

KV accounting (tokens): ``used = cached blocks * BLOCK_TOKENS + own tokens of running requests``,
always within ``[0, kv_capacity_tokens]`` (prefill chunks reserve room for the step's decode
tokens, which are added last). Decoding requests are not touched per step: their count
and summed context advance in O(1) per *decode step* (a step that carries the decodes; every step
in ``"admission"`` order), and a heap of last-token decode-step counts finishes them.
:attr:`SimEngine.decode_step_flags` records which steps were decode steps, so token times can be
read back (:func:`experiments.sim.results.token_times`).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator

from engine_dispatch.types import EngineLoad
from experiments.sim.config import EngineConfig
from experiments.sim.decode_reservation import CLIP_MAX_NEW_TOKENS, DecodeReservation, RunningRequest
from experiments.sim.prefix_cache import PrefixCache
from experiments.sim.request_state import SimRequest
from experiments.workloads.types import BLOCK_TOKENS
from perf_model.batch import BatchShape, MoeFactors, StepTimeModel
from request_sched.headroom import LearntHeadroom
from request_sched.queue import RequestQueue

#: called with (request, now) when a request finishes or fails on the engine
FinishCallback = Callable[[SimRequest, float], None]


class SimEngine:
    """A continuous-batching engine driven by the cluster's event loop.

    Attributes:
        step_end_s: end time of every completed step (seconds).
        step_emit_s: when every completed step's tokens reach the server's output (seconds): its
            end, or with ``EngineConfig.deferred_output`` the end of the step that started right
            after it; a request's token times are read from it through :attr:`SimRequest.segments`.
        load: this engine's live load report (updated in place at every step and arrival).
        preemptions: requests preempted on this engine.
        steps_done: completed steps.
        decode_step_flags: per completed step, 1 if the decoding requests got a token in it
            (always in ``"admission"`` order; in ``"policy"`` order not for a prefill step without
            mixed chunk), else 0.
        decode_steps_done: completed decode steps (the sum of ``decode_step_flags``).
    """

    def __init__(self, engine_id: int, config: EngineConfig, queue: RequestQueue,
                 model: StepTimeModel, moe: MoeFactors | None, on_finish: FinishCallback) -> None:
        self.engine_id = engine_id
        self.config = config
        self.queue = queue
        self.model = model
        self.moe = moe
        self.on_finish = on_finish
        self.capacity = config.kv_capacity_tokens
        self.cache = PrefixCache()
        self.own_tokens = 0
        self.running: dict[str, SimRequest] = {}
        self.prefilling: list[SimRequest] = []
        self.waiting: dict[str, SimRequest] = {}
        self.decode_seqs = 0
        self.decode_kv = 0
        self.pending_prefill = 0
        self.busy = False
        self.steps_done = 0
        self.decode_steps_done = 0
        self.decode_step_flags = bytearray()
        self.step_end_s: list[float] = []
        self.step_emit_s: list[float] = []
        self.preemptions = 0
        self.load = EngineLoad(engine_id=engine_id, kv_capacity_tokens=self.capacity)
        self._finish_heap: list[tuple[int, int, int, SimRequest]] = []
        self._seq = itertools.count()
        self._scheduled: list[tuple[SimRequest, int]] = []
        self._step_decodes = False
        self._last_decode_step = -1
        self._matched_version = -1
        self.headroom = LearntHeadroom() if config.learnt_headroom else None
        self.reservation = (DecodeReservation(self.capacity, clip=self._reservation_clip)
                            if config.decode_reservation else None)

    def _reservation_clip(self) -> int:
        """SGLang's ``CLIP_MAX_NEW_TOKENS``: the learnt headroom's value, else SGLang's constant."""
        return self.headroom.tokens if self.headroom is not None else CLIP_MAX_NEW_TOKENS

    # --- KV cache -------------------------------------------------------------------------------
    @property
    def kv_used(self) -> int:
        """KV tokens in use: prefix-cache blocks plus the running requests' own tokens."""
        return self.cache.blocks * BLOCK_TOKENS + self.own_tokens

    def _make_room(self, tokens: int) -> bool:
        """Evict unpinned prefix blocks until ``tokens`` are free; True if they are."""
        free = self.capacity - self.kv_used
        if free < tokens and self.cache.evictable_blocks:
            self.cache.evict(-(-(tokens - free) // BLOCK_TOKENS))
            free = self.capacity - self.kv_used
        return free >= tokens

    def _match(self, req: SimRequest) -> int:
        """Prompt blocks of ``req`` cached now (never the whole prompt: one token is always computed)."""
        if not self.config.prefix_caching or not req.trace.prefix_blocks:
            return 0
        return self.cache.match(req.trace.prefix_blocks, (req.prompt_tokens - 1) // BLOCK_TOKENS)

    def cached_prefix_tokens(self, req: SimRequest) -> int:
        """Prompt tokens of ``req`` this engine's prefix cache would serve if it were admitted now
        (whole blocks; 0 with prefix caching off). ``req`` need not be on this engine."""
        return self._match(req) * BLOCK_TOKENS

    # --- arrivals -------------------------------------------------------------------------------
    def enqueue(self, req: SimRequest, now: float) -> None:
        """A request arrives (or returns after preemption) in the waiting queue."""
        if req.trace.input_tokens + req.trace.output_tokens > self.capacity:
            req.failed = True
            req.error = (f"input + output tokens {req.trace.input_tokens + req.trace.output_tokens} "
                         f"exceed the KV capacity {self.capacity}")
            self.on_finish(req, now)
            return
        cached = self._match(req) * BLOCK_TOKENS
        req.waiting.cached_tokens = cached
        req.pending_estimate = req.prompt_tokens - cached
        self.pending_prefill += req.pending_estimate
        self.waiting[req.trace.request_id] = req
        self.queue.add(req.waiting, now)
        self._report(now)

    def withdraw(self, request_id: str, now: float) -> SimRequest | None:
        """Take a waiting request out of this engine's queue and books (e.g. to move it to another
        engine); returns it, or None if it is not waiting here (running, finished, elsewhere)."""
        req = self.waiting.pop(request_id, None)
        if req is None:
            return None
        self.queue.remove(req.waiting)
        self.pending_prefill -= req.pending_estimate
        req.pending_estimate = 0
        self._report(now)
        return req

    def _rematch_waiting(self) -> None:
        """Refresh the waiting requests' ``cached_tokens`` after the prefix cache changed."""
        if (not self.config.prefix_caching or self._matched_version == self.cache.version
                or len(self.waiting) > self.config.rematch_waiting_max):
            return
        self._matched_version = self.cache.version
        for req in self.waiting.values():
            cached = self._match(req) * BLOCK_TOKENS
            if cached != req.waiting.cached_tokens:
                req.waiting.cached_tokens = cached
                self.pending_prefill += (req.prompt_tokens - cached) - req.pending_estimate
                req.pending_estimate = req.prompt_tokens - cached

    # --- preemption -----------------------------------------------------------------------------
    def _preempt(self, req: SimRequest, now: float) -> None:
        """Drop ``req``'s KV (recompute preemption) and put it back in the waiting queue."""
        if req.decode_from_step >= 0:
            decoded = self.decode_steps_done - req.decode_from_tick
            last_step = self._last_decode_step if decoded else req.decode_from_step
            req.segments.append((req.decode_from_step, last_step))
            req.generated += decoded + 1
            self.own_tokens -= req.own_tokens + decoded
            self.decode_kv -= req.prompt_tokens + decoded
            self.decode_seqs -= 1
            req.epoch += 1
            req.decode_from_step = -1
        else:
            self.own_tokens -= req.own_tokens
            self.pending_prefill -= req.prompt_tokens - req.prefill_pos
            self.prefilling.remove(req)
        if req.node is not None:
            self.cache.release(req.node, now)
            req.node = None
        del self.running[req.trace.request_id]
        req.preemptions += 1
        self.preemptions += 1
        req.prompt_tokens = req.trace.input_tokens + req.generated
        req.prefill_pos = req.own_tokens = req.cached_tokens = 0
        req.waiting.generated_tokens = req.generated
        self.enqueue(req, now)

    def _newest_running(self) -> SimRequest:
        return next(reversed(self.running.values()))

    # --- one step -------------------------------------------------------------------------------
    def begin_step(self, now: float) -> float | None:
        """Schedule the next step at ``now``; returns its duration in seconds, or None when idle."""
        config = self.config
        by_policy = config.prefill_order == "policy"
        preempted = False
        if not by_policy:
            preempted = self._make_decode_room(now)
        mixed = not by_policy or config.mixed_chunk
        budget = config.max_batched_tokens - (self.decode_seqs if mixed else 0)
        if config.budget is not None:
            budget = config.budget.budget(self.decode_seqs, self.decode_kv, limit=budget)
        decode_room = self.decode_seqs if mixed else 0
        preempted = self._continue_prefills(budget, decode_room, now) or preempted
        budget -= sum(chunk for _, chunk in self._scheduled)
        if not preempted:
            self._admit(budget, decode_room, now)
        if not by_policy:
            self._step_decodes = True
        elif self._scheduled:
            self._step_decodes = config.mixed_chunk and self._make_room(self.decode_seqs)
        else:
            retracted = self._make_decode_room(now)
            self._step_decodes = True
            if self.reservation is not None and self.decode_seqs:
                self.reservation.on_decode_step(retracted, self._running_outputs())
        self._report(now)
        scheduled = self._scheduled
        if not scheduled and not self.decode_seqs:
            self.busy = False
            if self.reservation is not None:
                self.reservation.on_idle()
            return None
        self.busy = True
        decode_seqs = decode_kv = 0
        if self._step_decodes:
            self.decode_kv += self.decode_seqs  # each decoding request writes one token of KV
            self.own_tokens += self.decode_seqs
            decode_seqs, decode_kv = self.decode_seqs, self.decode_kv
        prefill_tokens = pairs = prefill_kv = 0
        cached_prefill = 0
        for req, chunk in scheduled:
            before = req.prefill_pos - chunk
            prefill_tokens += chunk
            pairs += chunk * (before + (chunk + 1) / 2)
            prefill_kv += req.prefill_pos
            if before == req.cached_tokens:
                cached_prefill += req.cached_tokens
        batch = BatchShape(prefill_tokens=prefill_tokens, cached_prefill_tokens=cached_prefill,
                           decode_seqs=decode_seqs, kv_context_tokens=decode_kv + prefill_kv,
                           prefill_attention_pairs=pairs)
        duration = self.model.step_seconds(batch, self.moe)
        if self.config.deferred_output and self.step_end_s and self.step_end_s[-1] == now:
            self.step_emit_s[-1] = now + duration  # the previous step's output waits for this one
        return duration

    def _make_decode_room(self, now: float) -> bool:
        """Preempt the newest running requests until the decodes' next tokens fit; True if any was."""
        preempted = False
        while self.decode_seqs and not self._make_room(self.decode_seqs):
            self._preempt(self._newest_running(), now)
            preempted = True
        return preempted

    def _continue_prefills(self, budget: int, decode_room: int, now: float) -> bool:
        """Schedule the next chunk of each unfinished prefill, in admission order, within
        ``budget`` tokens and with KV room for ``decode_room`` decode tokens; True if a request
        had to be preempted to make room."""
        preempted = False
        for req in list(self.prefilling):
            if budget <= 0:
                break
            if req.trace.request_id not in self.running:
                continue  # preempted below while making room for an earlier request
            chunk = min(req.prompt_tokens - req.prefill_pos, budget)
            while not self._make_room(chunk + decode_room):
                victim = self._newest_running()
                self._preempt(victim, now)
                preempted = True
                if victim is req:
                    break
            else:
                self._take_chunk(req, chunk)
                budget -= chunk
        return preempted

    def _take_chunk(self, req: SimRequest, chunk: int) -> None:
        """Allocate KV for ``chunk`` prompt tokens of ``req`` in this step."""
        req.prefill_pos += chunk
        req.own_tokens += chunk
        self.own_tokens += chunk
        self.pending_prefill -= chunk
        self._scheduled.append((req, chunk))

    def _running_outputs(self) -> Iterator[RunningRequest]:
        """Decoding requests with the output tokens each has produced so far (all stretches)."""
        for r in self.running.values():
            if r.decode_from_step >= 0:
                yield RunningRequest(r.trace.input_tokens, r.generated + self.decode_steps_done - r.decode_from_tick + 1,
                                     r.waiting.max_new_tokens)

    def _admit(self, budget: int, decode_room: int, now: float) -> None:
        """Admit waiting requests in policy order while they fit in ``budget`` tokens, the running
        limit and the KV cache (with room for ``decode_room`` decode tokens, and with
        ``decode_reservation`` SGLang's headroom for future decode tokens)."""
        config = self.config
        self._rematch_waiting()
        reservation = self.reservation
        reserved = reservation.reserved(self._running_outputs()) if reservation and self.waiting else 0.0
        while budget > 0 and self.waiting and len(self.running) < config.max_running:
            head = self.queue.peek(now)
            req: SimRequest = head.host_ref  # type: ignore[assignment]
            matched = self._match(req)
            node = None
            if matched:
                node, _ = self.cache.acquire(req.trace.prefix_blocks, matched, now)
            cached = matched * BLOCK_TOKENS
            chunk = min(req.prompt_tokens - cached, budget)
            needed = req.prompt_tokens - cached if config.admit_whole_prompt else chunk
            fits, new_tokens = True, 0
            if reservation is not None:
                new_tokens = reservation.new_tokens(req.waiting.max_new_tokens, req.trace.input_tokens, req.generated)
                free = self.capacity - self.kv_used + self.cache.evictable_blocks * BLOCK_TOKENS
                fits = reservation.fits(free, reserved, req.prompt_tokens - cached, new_tokens)
            if not fits or not self._make_room(needed + decode_room):
                if node is not None:
                    self.cache.release(node, now)
                break
            popped = self.queue.pop(now)
            if popped is not head:
                raise RuntimeError(f"request policy {type(self.queue).__name__}: pop() returned "
                                   f"{popped.request_id!r} but peek() promised {head.request_id!r}")
            del self.waiting[req.trace.request_id]
            self.running[req.trace.request_id] = req
            self.prefilling.append(req)
            req.node = node
            req.cached_tokens = req.prefill_pos = cached
            req.hit_tokens += cached
            self.pending_prefill += (req.prompt_tokens - cached) - req.pending_estimate
            req.pending_estimate = 0
            self._take_chunk(req, chunk)
            budget -= chunk
            if req.prefill_pos == req.prompt_tokens:  # a chunked request reserves no decode tokens yet
                reserved += new_tokens

    def end_step(self, now: float) -> None:
        """The scheduled step ends at ``now``: emit first tokens, finish requests."""
        step = self.steps_done
        self.step_end_s.append(now)
        self.step_emit_s.append(now)
        self.steps_done += 1
        self.decode_step_flags.append(self._step_decodes)
        if self._step_decodes:
            self.decode_steps_done += 1
            self._last_decode_step = step
        completed = False
        prefilled = 0
        for req, chunk in self._scheduled:
            prefilled += chunk
            if req.prefill_pos >= req.prompt_tokens:
                completed = True
                self._prefill_done(req, step, now)
        self._scheduled.clear()
        if prefilled:
            self.queue.on_prefill(prefilled)
        if completed:
            self.prefilling = [r for r in self.prefilling if r.prefill_pos < r.prompt_tokens]
        heap = self._finish_heap
        ticks = self.decode_steps_done
        while heap and heap[0][0] <= ticks:  # entries of preempted stretches may lie behind
            _, _, epoch, req = heapq.heappop(heap)
            if epoch == req.epoch:
                decoded = ticks - req.decode_from_tick
                self.own_tokens -= req.own_tokens + decoded
                self.decode_kv -= req.prompt_tokens + decoded
                self.decode_seqs -= 1
                self._finish(req, req.decode_from_step, step, now)

    def _prefill_done(self, req: SimRequest, step: int, now: float) -> None:
        """``req``'s prompt is in KV: share its blocks, emit its next token, start decoding."""
        blocks = req.trace.prefix_blocks
        if self.config.prefix_caching and blocks:
            matched = req.cached_tokens // BLOCK_TOKENS
            if len(blocks) > matched:
                node, _ = self.cache.acquire(blocks, len(blocks), now)
                if req.node is not None:
                    self.cache.release(req.node, now)
                req.node = node
                shared = (len(blocks) - matched) * BLOCK_TOKENS
                req.own_tokens -= shared
                self.own_tokens -= shared
        remaining = req.trace.output_tokens - req.generated
        if remaining <= 1:
            self.own_tokens -= req.own_tokens
            self._finish(req, step, step, now)
            return
        req.decode_from_step = step
        req.decode_from_tick = self.decode_steps_done
        self.decode_seqs += 1
        self.decode_kv += req.prompt_tokens
        heapq.heappush(self._finish_heap, (req.decode_from_tick + remaining - 1, next(self._seq), req.epoch, req))

    def _finish(self, req: SimRequest, first_step: int, last_step: int, now: float) -> None:
        req.segments.append((first_step, last_step))
        req.generated = req.trace.output_tokens
        req.decode_from_step = -1
        req.finished = True
        if req.node is not None:
            self.cache.release(req.node, now)
            req.node = None
        del self.running[req.trace.request_id]
        self.queue.on_finished(req.waiting, req.trace.output_tokens)
        if self.headroom is not None:
            self.headroom.observe(req.trace.output_tokens)
        self.on_finish(req, now)

    def _report(self, now: float) -> None:
        load = self.load
        load.running = len(self.running)
        load.waiting = len(self.waiting)
        # in use by requests (own tokens + pinned blocks), as SGLang's num_used_tokens: evictable
        # prefix-cache blocks are free to the next admission, not load
        load.kv_used_tokens = self.kv_used - self.cache.evictable_blocks * BLOCK_TOKENS
        load.pending_prefill_tokens = self.pending_prefill
        load.reported_s = now
