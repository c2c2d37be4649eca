"""The router's late-binding host: hold requests per engine, send when there is room, rebalance.

With ``moesched route --late-binding [FILE]`` the proxy hands every dispatch decision to
:meth:`LateBinder.acquire` before forwarding. The request is booked with the dispatcher on the
chosen engine at once (``on_dispatched``; held requests count in its books) and submitted to the
pure :class:`~engine_dispatch.late_binding.HoldQueues`: sent at once if that engine has a free
slot, else held. Every ``hold.tick_s`` (and whenever a slot frees) the host:

1. withdraws held requests whose client has gone (answered 499 ``client_closed``; nothing is sent);
2. re-picks held requests whose engine is unhealthy (the dispatcher chooses among the healthy
   engines that have not failed this request before; 503 ``no_healthy_engine`` when none is left);
3. re-books held requests that a newer engine report would otherwise be taken to cover
   (:meth:`~engine_dispatch.late_binding.HoldQueues.stale_bookings`), so they stay in the
   dispatcher's view of their engine's load; then runs a
   :class:`~engine_dispatch.rebalance.SelectiveRebalancer` round when due, over the engines'
   reports; applied moves are re-booked with the dispatcher (``on_dispatched`` on the target);
4. releases queue heads to healthy engines with free slots (resolving the waiting handlers) and
   re-books each at its send time, the time from which engine reports may count it.

Everything runs on the router's event loop with no ``await`` between a decision and its booking, so
a move cannot race a release: a request is released (sent) at most once, to the engine it is held
on at that instant. A handler cancelled while its request was released frees the slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from aiohttp import web

from engine_dispatch.dispatcher import Dispatcher
from engine_dispatch.late_binding import HoldQueues, LateBindingConfig
from engine_dispatch.rebalance import SelectiveRebalancer
from engine_dispatch.router.errors import RouterError
from engine_dispatch.router.metrics import LateBindingMetrics
from engine_dispatch.router.pool import EnginePool
from engine_dispatch.router.request_parse import ParsedRequest

_log = logging.getLogger(__name__)


@dataclass
class _Waiter:
    parsed: ParsedRequest
    request: web.Request
    tried: set[int]
    future: asyncio.Future[int]


class LateBinder:
    """Owns the hold queues and the rebalancer of one router (see the module docstring)."""

    def __init__(self, config: LateBindingConfig, rebalancer: SelectiveRebalancer, pool: EnginePool,
                 dispatcher: Dispatcher) -> None:
        self.config = config
        self.rebalancer = rebalancer
        self.pool = pool
        self.dispatcher = dispatcher
        self.queues = HoldQueues(len(pool.engines), config.hold.max_in_flight, book=self._book)
        self.metrics = LateBindingMetrics()
        self._waiters: dict[str, _Waiter] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for rid in list(self._waiters):
            self._fail(rid, RouterError(503, "shutting_down", "the router is stopping"))

    async def acquire(self, request: web.Request, parsed: ParsedRequest, engine_id: int,
                      tried: set[int]) -> int:
        """Hold ``parsed`` (already booked on ``engine_id``) until it may be sent; returns the
        engine to send it to. Raises RouterError when it cannot be sent."""
        rid = parsed.dispatch.request_id
        if self.queues.submit(rid, engine_id, parsed.dispatch.prompt_tokens, time.monotonic()):
            return engine_id
        self.metrics.held_total += 1
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters[rid] = _Waiter(parsed, request, tried, future)
        try:
            return await future
        except asyncio.CancelledError:
            held = self.queues.withdraw(rid)
            if held is not None:  # still held: gone, never sent
                self._unbook(parsed, held.engine_id)
                self.metrics.withdrawn += 1
            elif future.done() and not future.cancelled():  # released but never forwarded
                self.finished(rid)
            self._waiters.pop(rid, None)
            raise

    def finished(self, request_id: str) -> None:
        """A sent request ended: free its slot and release what now fits."""
        self.queues.finished(request_id)
        if self._waiters:
            self._release(time.monotonic())

    def held_count(self) -> int:
        return self.queues.held_count()

    # --- the periodic check -----------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.hold.tick_s)
            if self._waiters:
                try:
                    self.tick(time.monotonic())
                except Exception:  # a bug must not strand every held request: log, keep ticking
                    _log.exception("late binding: tick failed")

    def tick(self, now: float) -> None:
        """Steps 1-4 of the module docstring."""
        for rid, waiter in list(self._waiters.items()):
            transport = waiter.request.transport
            held = self.queues.withdraw(rid) if transport is None or transport.is_closing() else None
            if held is not None:
                self._unbook(waiter.parsed, held.engine_id)
                self.metrics.withdrawn += 1
                self._fail(rid, RouterError(499, "client_closed", "the client closed the connection"))
        healthy = [engine.healthy for engine in self.pool.engines]
        for rid in self.queues.stranded(healthy):
            self._repick(rid, now)
        loads = self.pool.loads_for(None, set())
        self.queues.stale_bookings([load.reported_s for load in loads], now)
        if self.rebalancer.due(now):
            self.metrics.moved += len(self.queues.rebalance(self.rebalancer, loads, now))
        self._release(now)

    def _repick(self, rid: str, now: float) -> None:
        waiter = self._waiters[rid]
        source = self.queues.held_on(rid)
        assert source is not None
        # it was never sent to ``source``: only engines that failed to serve it are excluded
        loads = self.pool.loads_for(waiter.parsed.model, waiter.tried)
        try:
            target = self.dispatcher.pick(waiter.parsed.dispatch, loads, now)
        except RuntimeError:
            self.queues.withdraw(rid)
            self._unbook(waiter.parsed, source)
            self._fail(rid, RouterError(503, "no_healthy_engine",
                                        "the engine failed while the request was held and no "
                                        "other healthy engine is left"))
            return
        self.queues.retarget(rid, target, now)
        self.metrics.repicked += 1

    def _release(self, now: float) -> None:
        healthy = [engine.healthy for engine in self.pool.engines]
        for release in self.queues.release(healthy, now):
            waiter = self._waiters.pop(release.request_id)
            self.metrics.observe_hold(release.held_for_s)
            waiter.future.set_result(release.engine_id)

    def _book(self, request_id: str, engine_id: int, now: float) -> None:
        """``HoldQueues``' booking callback: (re-)book a held or just released request."""
        self.dispatcher.on_dispatched(self._waiters[request_id].parsed.dispatch, engine_id, now)

    def _unbook(self, parsed: ParsedRequest, engine_id: int) -> None:
        """A held request leaves without being sent: take it out of the dispatcher's books."""
        self.dispatcher.on_finished(parsed.dispatch, engine_id, time.monotonic(), 0)

    def _fail(self, rid: str, error: RouterError) -> None:
        waiter = self._waiters.pop(rid, None)
        if waiter is not None and not waiter.future.done():
            waiter.future.set_exception(error)
