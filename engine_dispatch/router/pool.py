"""The engines behind the router: health checks (remove / re-add) and load polling.

- Health: every ``health_interval_s`` each engine gets ``GET /health`` (timeout
  ``health_timeout_s``). ``fail_threshold`` consecutive failures take it out of rotation; an
  answer the proxy got from the engine counts as a success too (a busy engine may answer its
  probe late but is alive), and the proxy takes an engine out at once when a request to it fails
  to connect. One successful probe puts it back (and tells the dispatcher to forget its cache: it
  may have restarted). Healthy engines' model lists come from ``GET /v1/models``.
- Load: every ``load_refresh_s`` healthy engines are polled (``load_kind``: ``sglang`` =
  ``/v1/loads?include=all&format=json``, ``vllm`` = ``/metrics``, ``auto`` = try SGLang then vLLM,
  ``none``). A report's ``reported_s`` is the monotonic time the poll was sent; reports older than
  the dispatcher's ``stale_after_s`` are ignored (see :mod:`engine_dispatch.load_tracker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import aiohttp

from engine_dispatch.dispatcher import Dispatcher
from engine_dispatch.router.load_sources import (LoadFields, parse_sglang_loads,
                                                 parse_vllm_metrics)
from engine_dispatch.types import EngineLoad
from moesched_base.http import proxy_connector

_SGLANG_LOADS = "/v1/loads?include=all&format=json"


@dataclass(frozen=True)
class PoolSettings:
    health_interval_s: float = 2.0
    health_timeout_s: float = 5.0
    fail_threshold: int = 3
    load_refresh_s: float = 0.5
    load_kind: str = "auto"  # auto | sglang | vllm | none

    def __post_init__(self) -> None:
        if self.load_kind not in ("auto", "sglang", "vllm", "none"):
            raise ValueError(f"load kind: expected auto, sglang, vllm or none, got {self.load_kind!r}")
        for name in ("health_interval_s", "health_timeout_s", "load_refresh_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: expected > 0, got {getattr(self, name)}")
        if self.fail_threshold < 1:
            raise ValueError(f"fail_threshold: expected >= 1, got {self.fail_threshold}")


@dataclass
class Engine:
    """One upstream engine as the router sees it."""

    engine_id: int
    url: str
    load: EngineLoad
    healthy: bool = False
    failures: int = 0
    models: set[str] = field(default_factory=set)
    load_kind: str = "auto"


class EnginePool:
    """Engines ``0..N-1`` in the order of ``urls``; owns the background check tasks."""

    def __init__(self, urls: list[str], dispatcher: Dispatcher, settings: PoolSettings) -> None:
        self.settings = settings
        self.dispatcher = dispatcher
        self.engines = [Engine(i, url.rstrip("/"), EngineLoad(i, reported_s=float("-inf")),
                               load_kind=settings.load_kind) for i, url in enumerate(urls)]
        self.session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Open the client session, run one health round, start the loops."""
        self.session = aiohttp.ClientSession(connector=proxy_connector())
        await self.check_health()
        self._tasks = [asyncio.create_task(self._every(self.settings.health_interval_s,
                                                       self.check_health)),
                       asyncio.create_task(self._every(self.settings.load_refresh_s,
                                                       self.poll_loads))]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.session is not None:
            await self.session.close()

    def loads_for(self, model: str | None, exclude: set[int]) -> list[EngineLoad]:
        """Current loads with ``healthy`` cleared for engines that are down, in ``exclude`` or
        known not to serve ``model``."""
        for engine in self.engines:
            engine.load.healthy = (engine.healthy and engine.engine_id not in exclude
                                   and (model is None or not engine.models
                                        or model in engine.models))
        return [engine.load for engine in self.engines]

    def known_models(self) -> set[str]:
        return set().union(*(engine.models for engine in self.engines if engine.healthy))

    def mark_alive(self, engine_id: int) -> None:
        """The engine just answered a proxied request: reset its probe-failure count."""
        self.engines[engine_id].failures = 0

    def mark_failed(self, engine_id: int) -> None:
        """A request to the engine failed at the connection level: out of rotation now."""
        engine = self.engines[engine_id]
        engine.healthy = False
        engine.failures = max(engine.failures, self.settings.fail_threshold)

    # --- health ----------------------------------------------------------------------------

    async def check_health(self) -> None:
        await asyncio.gather(*(self._check_one(engine) for engine in self.engines))

    async def _check_one(self, engine: Engine) -> None:
        assert self.session is not None
        timeout = aiohttp.ClientTimeout(total=self.settings.health_timeout_s)
        try:
            async with self.session.get(engine.url + "/health", timeout=timeout) as response:
                ok = response.status == 200
                await response.read()
            if ok:
                async with self.session.get(engine.url + "/v1/models", timeout=timeout) as response:
                    if response.status == 200:
                        body = await response.json(content_type=None)
                        engine.models = {m["id"] for m in body.get("data", [])
                                         if isinstance(m, dict) and isinstance(m.get("id"), str)}
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, AttributeError):
            ok = False
        if ok:
            if not engine.healthy:
                self.dispatcher.on_engine_reset(engine.engine_id)
            engine.healthy, engine.failures = True, 0
        else:
            engine.failures += 1
            if engine.failures >= self.settings.fail_threshold:
                engine.healthy = False

    # --- load --------------------------------------------------------------------------------

    async def poll_loads(self) -> None:
        await asyncio.gather(*(self._poll_one(engine) for engine in self.engines
                               if engine.healthy and engine.load_kind != "none"))

    async def _poll_one(self, engine: Engine) -> None:
        sent_s = time.monotonic()
        kinds = ("sglang", "vllm") if engine.load_kind == "auto" else (engine.load_kind,)
        for kind in kinds:
            fields = await self._fetch(engine.url, kind)
            if fields is not None:
                engine.load_kind = kind
                load = engine.load
                load.running, load.waiting = fields.running, fields.waiting
                load.pending_prefill_tokens = fields.pending_prefill_tokens
                load.kv_used_tokens = fields.kv_used_tokens
                load.kv_capacity_tokens = fields.kv_capacity_tokens
                load.reported_s = sent_s
                return

    async def _fetch(self, url: str, kind: str) -> LoadFields | None:
        assert self.session is not None
        timeout = aiohttp.ClientTimeout(total=self.settings.health_timeout_s)
        path = _SGLANG_LOADS if kind == "sglang" else "/metrics"
        try:
            async with self.session.get(url + path, timeout=timeout) as response:
                if response.status != 200:
                    return None
                if kind == "sglang":
                    return parse_sglang_loads(await response.json(content_type=None))
                return parse_vllm_metrics(await response.text())
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            return None

    @staticmethod
    async def _every(period_s: float, action) -> None:  # type: ignore[no-untyped-def]
        while True:
            await asyncio.sleep(period_s)
            await action()
