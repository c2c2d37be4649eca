"""Test support: in-process fake engines behind a real ``engine_dispatch`` router on loopback."""

from collections.abc import Callable

import aiohttp
from aiohttp.test_utils import TestServer

from engine_dispatch.dispatcher import Dispatcher
from engine_dispatch.factory import create_dispatcher
from engine_dispatch.router.app import ProxySettings, Router
from engine_dispatch.router.late_binding import LateBinder
from engine_dispatch.router.pool import EnginePool, PoolSettings


class RouterCluster:
    """Fake engines + a router, all in this event loop (``async with``).

    ``late`` builds the router's late binder from (pool, dispatcher); None routes at once.
    Attributes after entry: ``servers``, ``pool``, ``late``, ``router``, ``router_server``, ``client``.
    """

    def __init__(self, engines, policy: str = "scored", max_attempts: int = 3, max_body_bytes: int = 1 << 20,
                 health_timeout_s: float = 2.0,
                 late: Callable[[EnginePool, Dispatcher], LateBinder] | None = None) -> None:
        self.engines = engines
        self.policy = policy
        self.max_attempts = max_attempts
        self.max_body_bytes = max_body_bytes
        self.health_timeout_s = health_timeout_s
        self._late_factory = late

    async def __aenter__(self):
        self.servers = [TestServer(engine.application()) for engine in self.engines]
        for server in self.servers:
            await server.start_server()
        dispatcher = create_dispatcher(self.policy, len(self.engines))
        self.pool = EnginePool([str(s.make_url("")) for s in self.servers], dispatcher,
                               PoolSettings(health_interval_s=3600, load_refresh_s=3600,
                                            health_timeout_s=self.health_timeout_s))
        self.late = self._late_factory(self.pool, dispatcher) if self._late_factory else None
        self.router = Router(self.pool, dispatcher, ProxySettings(
            max_attempts=self.max_attempts, max_body_bytes=self.max_body_bytes), late=self.late)
        self.router_server = TestServer(self.router.application())
        await self.router_server.start_server()
        self.client = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc):
        await self.client.close()
        await self.router_server.close()
        for server in self.servers:
            await server.close()
