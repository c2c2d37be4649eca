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
class EngineEstimate:
    """Best current estimate of one engine's load (all counts include requests in flight to it).

    Attributes:
        engine_id: engine index.
        outstanding: running + waiting requests.
        running: requests in the running batch (decoding), as last reported or estimated.
        pending_prefill_tokens: uncached prompt tokens queued for prefill.
        kv_used_tokens: KV-cache tokens in use.
        kv_capacity_tokens: KV-cache capacity in tokens (>= 1).
        stale: True when the estimate comes from the dispatcher's own books only.
    """

    engine_id: int
    outstanding: int
    running: int
    pending_prefill_tokens: int
    kv_used_tokens: int
    kv_capacity_tokens: int
    stale: bool

    @property
    def kv_used_fraction(self) -> float:
        return self.kv_used_tokens / self.kv_capacity_tokens


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

    def estimate(self, load: EngineLoad, now: float) -> EngineEstimate:
        """Merge ``load`` (the engine's latest report) with the books; see the module docstring."""
        engine = load.engine_id
        capacity = max(1, load.kv_capacity_tokens)
        if now - load.reported_s > self.stale_after_s:
            own = self._count[engine]  # without a report, every request in flight counts as running
            return EngineEstimate(engine, own, own, self._pending[engine], self._prompt[engine],
                                  capacity, stale=True)
        if load.reported_s != self._report_s[engine]:
            self._rebase(engine, load.reported_s)
        return EngineEstimate(
            engine,
            load.running + load.waiting + self._since_count[engine],
            load.running,
            load.pending_prefill_tokens + self._since_pending[engine],
            load.kv_used_tokens + self._since_prompt[engine],
            capacity,
            stale=False,
        )

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
