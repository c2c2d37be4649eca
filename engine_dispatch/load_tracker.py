"""The dispatcher's own count of work in flight, merged with the engines' (possibly stale) reports.

A report (:class:`~engine_dispatch.types.EngineLoad`) taken at ``reported_s`` covers every request
dispatched at or before ``reported_s``; requests dispatched later are added from the dispatcher's
own books. A report older than ``stale_after_s`` is ignored and the engine's load is the
dispatcher's own count of its in-flight requests (prefill counted pending until the host signals
the first token). All times are host-clock seconds, the same clock as ``now`` and ``reported_s``;
``now`` must not go backwards between calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine_dispatch.types import EngineLoad


@dataclass
class _InFlight:
    engine_id: int
    dispatched_s: float
    prompt_tokens: int
    uncached_tokens: int
    prefill_pending: bool = True


@dataclass
class Estimates:
    """Best current load estimates of several engines, as aligned lists (one entry per engine).

    Attributes:
        engine_id: engine indices.
        outstanding: running + waiting requests (including requests in flight to the engine).
        running: requests in the running (decoding) batch, as reported; own in-flight count when
            the report is stale.
        pending_prefill_tokens: uncached prompt tokens queued for prefill.
        kv_used_tokens: KV-cache tokens in use.
        kv_capacity_tokens: KV-cache capacity in tokens (>= 1).
    """

    engine_id: list[int]
    outstanding: list[int]
    running: list[int]
    pending_prefill_tokens: list[int]
    kv_used_tokens: list[int]
    kv_capacity_tokens: list[int]

    def __len__(self) -> int:
        return len(self.engine_id)

    def kv_used_fraction(self) -> list[float]:
        return [used / cap for used, cap in zip(self.kv_used_tokens, self.kv_capacity_tokens)]

    def subset(self, keep: list[int]) -> Estimates:
        """Only the entries at positions ``keep``."""
        return Estimates(*([column[i] for i in keep] for column in (
            self.engine_id, self.outstanding, self.running, self.pending_prefill_tokens,
            self.kv_used_tokens, self.kv_capacity_tokens)))


class LoadTracker:
    """Books of requests a dispatcher sent and has not yet seen finish.

    Args:
        num_engines: engines ``0..num_engines-1``.
        stale_after_s: a report older than this (seconds) is ignored, > 0.
    """

    def __init__(self, num_engines: int, stale_after_s: float) -> None:
        if stale_after_s <= 0:
            raise ValueError(f"stale_after_s: expected > 0, got {stale_after_s}")
        self.stale_after_s = stale_after_s
        self._requests: dict[str, _InFlight] = {}
        # per engine: own totals (all in flight) ...
        self._count = [0] * num_engines
        self._pending = [0] * num_engines
        self._prompt = [0] * num_engines
        # ... and the part dispatched after the engine's last seen report
        self._report_s = [float("-inf")] * num_engines
        self._since_count = [0] * num_engines
        self._since_pending = [0] * num_engines
        self._since_prompt = [0] * num_engines
        self._by_engine: list[dict[str, _InFlight]] = [{} for _ in range(num_engines)]
        self._last_dispatch_s = [float("-inf")] * num_engines

    def in_flight(self, engine_id: int) -> int:
        """Requests this dispatcher sent to ``engine_id`` that have not finished."""
        return self._count[engine_id]

    def dispatched(self, request_id: str, engine_id: int, now: float, prompt_tokens: int,
                   uncached_tokens: int) -> None:
        """Book a request sent to ``engine_id`` at ``now`` (a re-used id replaces the old booking)."""
        if request_id in self._requests:
            self.finished(request_id)
        record = _InFlight(engine_id, now, prompt_tokens, uncached_tokens)
        self._requests[request_id] = record
        self._by_engine[engine_id][request_id] = record
        self._last_dispatch_s[engine_id] = now
        self._add(record, +1, since=now > self._report_s[engine_id])

    def first_token(self, request_id: str) -> None:
        """The request's prefill is done (its uncached tokens are no longer pending)."""
        record = self._requests.get(request_id)
        if record is None or not record.prefill_pending:
            return
        engine = record.engine_id
        self._pending[engine] -= record.uncached_tokens
        if record.dispatched_s > self._report_s[engine]:
            self._since_pending[engine] -= record.uncached_tokens
        record.prefill_pending = False

    def finished(self, request_id: str) -> None:
        """The request left its engine (unknown ids are ignored)."""
        record = self._requests.pop(request_id, None)
        if record is None:
            return
        del self._by_engine[record.engine_id][request_id]
        self._add(record, -1, since=record.dispatched_s > self._report_s[record.engine_id])

    def estimate_all(self, loads: Sequence[EngineLoad], now: float) -> Estimates:
        """Merge each engine's latest report with the books (see the module docstring)."""
        stale_before = now - self.stale_after_s
        report_s, last_dispatch = self._report_s, self._last_dispatch_s
        since_count, since_pending, since_prompt = (self._since_count, self._since_pending,
                                                    self._since_prompt)
        any_stale = False
        for load in loads:
            reported, engine = load.reported_s, load.engine_id
            if reported < stale_before:
                any_stale = True
            elif reported != report_s[engine]:
                if reported >= last_dispatch[engine]:  # nothing sent since the report
                    report_s[engine] = reported
                    since_count[engine] = since_pending[engine] = since_prompt[engine] = 0
                else:
                    self._rebase(engine, reported)
        ids = [load.engine_id for load in loads]
        capacity = [cap if (cap := load.kv_capacity_tokens) > 0 else 1 for load in loads]
        outstanding = [load.running + load.waiting + since_count[e] for load, e in zip(loads, ids)]
        running = [load.running for load in loads]
        pending = [load.pending_prefill_tokens + since_pending[e] for load, e in zip(loads, ids)]
        kv_used = [load.kv_used_tokens + since_prompt[e] for load, e in zip(loads, ids)]
        if any_stale:  # replace stale reports by the dispatcher's own books
            for i, load in enumerate(loads):
                if load.reported_s < stale_before:
                    engine = ids[i]
                    outstanding[i] = running[i] = self._count[engine]
                    pending[i] = self._pending[engine]
                    kv_used[i] = self._prompt[engine]
        return Estimates(ids, outstanding, running, pending, kv_used, capacity)

    def _add(self, record: _InFlight, sign: int, since: bool) -> None:
        engine = record.engine_id
        pending = record.uncached_tokens if record.prefill_pending else 0
        self._count[engine] += sign
        self._pending[engine] += sign * pending
        self._prompt[engine] += sign * record.prompt_tokens
        if since:
            self._since_count[engine] += sign
            self._since_pending[engine] += sign * pending
            self._since_prompt[engine] += sign * record.prompt_tokens

    def _rebase(self, engine: int, reported_s: float) -> None:
        """A new report arrived: recount what was dispatched after it (newest first, stops early)."""
        self._report_s[engine] = reported_s
        count = pending = prompt = 0
        for record in reversed(self._by_engine[engine].values()):
            if record.dispatched_s <= reported_s:
                break
            count += 1
            pending += record.uncached_tokens if record.prefill_pending else 0
            prompt += record.prompt_tokens
        self._since_count[engine] = count
        self._since_pending[engine] = pending
        self._since_prompt[engine] = prompt
