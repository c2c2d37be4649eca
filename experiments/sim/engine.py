"""One simulated engine: continuous batching with chunked prefill, a paged KV cache with a prefix
cache, and recompute preemption, in the manner of vLLM's V1 scheduler.

Each step (:meth:`SimEngine.begin_step`):

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

The step's :class:`~perf_model.batch.BatchShape` goes to the step model; :meth:`end_step` applies
it at the returned time: finished prefills emit their first token and insert their prompt blocks
into the prefix cache, decoding requests whose last token fell on this step finish.

KV accounting (tokens): ``used = cached blocks * BLOCK_TOKENS + own tokens of running requests``,
always within ``[0, kv_capacity_tokens]`` (prefill chunks reserve room for the step's decode
tokens, which are added last). Decoding requests are not touched per step: their count
and summed context advance in O(1) per step, and a heap of last-token steps finishes them.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

from engine_dispatch.types import EngineLoad
from experiments.sim.config import EngineConfig
from experiments.sim.prefix_cache import PrefixCache
from experiments.sim.request_state import SimRequest
from experiments.workloads.types import BLOCK_TOKENS
from perf_model.batch import BatchShape, MoeFactors, StepTimeModel
from request_sched.queue import RequestQueue

#: called with (request, now) when a request finishes or fails on the engine
FinishCallback = Callable[[SimRequest, float], None]


class SimEngine:
    """A continuous-batching engine driven by the cluster's event loop.

    Attributes:
        step_end_s: end time of every completed step (seconds); a request's token times are read
            from it through :attr:`SimRequest.segments`.
        load: this engine's live load report (updated in place at every step and arrival).
        preemptions: requests preempted on this engine.
        steps_done: completed steps.
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
        self.step_end_s: list[float] = []
        self.preemptions = 0
        self.load = EngineLoad(engine_id=engine_id, kv_capacity_tokens=self.capacity)
        self._finish_heap: list[tuple[int, int, int, SimRequest]] = []
        self._seq = itertools.count()
        self._scheduled: list[tuple[SimRequest, int]] = []
        self._matched_version = -1

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
            decoded = self.steps_done - 1 - req.decode_from_step
            req.segments.append((req.decode_from_step, self.steps_done - 1))
            req.generated += self.steps_done - req.decode_from_step
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
        preempted = False
        while self.decode_seqs and not self._make_room(self.decode_seqs):
            self._preempt(self._newest_running(), now)
            preempted = True
        config = self.config
        budget = config.max_batched_tokens - self.decode_seqs
        if config.budget is not None:
            budget = min(budget, config.budget.budget(self.decode_seqs, self.decode_kv))
        scheduled = self._scheduled
        for req in list(self.prefilling):
            if budget <= 0:
                break
            if req.trace.request_id not in self.running:
                continue  # preempted below while making room for an earlier request
            chunk = min(req.prompt_tokens - req.prefill_pos, budget)
            while not self._make_room(chunk + self.decode_seqs):
                victim = self._newest_running()
                self._preempt(victim, now)
                preempted = True
                if victim is req:
                    break
            else:
                self._take_chunk(req, chunk)
                budget -= chunk
        if not preempted:
            budget = self._admit(budget, now)
        self._report(now)
        if not scheduled and not self.decode_seqs:
            self.busy = False
            return None
        self.busy = True
        self.decode_kv += self.decode_seqs  # each decoding request writes one token of KV
        self.own_tokens += self.decode_seqs
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
                           decode_seqs=self.decode_seqs,
                           kv_context_tokens=self.decode_kv + prefill_kv,
                           prefill_attention_pairs=pairs)
        return self.model.step_seconds(batch, self.moe)

    def _take_chunk(self, req: SimRequest, chunk: int) -> None:
        """Allocate KV for ``chunk`` prompt tokens of ``req`` in this step."""
        req.prefill_pos += chunk
        req.own_tokens += chunk
        self.own_tokens += chunk
        self.pending_prefill -= chunk
        self._scheduled.append((req, chunk))

    def _admit(self, budget: int, now: float) -> int:
        """Admit waiting requests in policy order while they fit; returns the budget left."""
        config = self.config
        self._rematch_waiting()
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
            if not self._make_room(needed + self.decode_seqs):
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
        return budget

    def end_step(self, now: float) -> None:
        """The scheduled step ends at ``now``: emit first tokens, finish requests."""
        step = self.steps_done
        self.step_end_s.append(now)
        self.steps_done += 1
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
        while heap and heap[0][0] <= step:  # entries of preempted stretches may lie behind
            _, _, epoch, req = heapq.heappop(heap)
            if epoch == req.epoch:
                decoded = step - req.decode_from_step
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
        self.decode_seqs += 1
        self.decode_kv += req.prompt_tokens
        heapq.heappush(self._finish_heap, (step + remaining - 1, next(self._seq), req.epoch, req))

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
