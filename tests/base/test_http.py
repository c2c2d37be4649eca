"""moesched_base.http: the benchmark connector opens a connection per request."""

import asyncio

import aiohttp
from aiohttp import web

from moesched_base.http import bench_connector


async def _peer_ports_of_two_requests() -> list[int]:
    ports: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        ports.append(request.transport.get_extra_info("peername")[1])
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession(connector=bench_connector()) as session:
            for _ in range(2):
                async with session.get(f"http://127.0.0.1:{port}/") as response:
                    assert await response.text() == "ok"
    finally:
        await runner.cleanup()
    return ports


def test_no_connection_is_reused_between_requests():
    """A reused keep-alive connection races uvicorn's 5 s idle timer on SGLang and vLLM servers."""
    first, second = asyncio.run(_peer_ports_of_two_requests())
    assert first != second  # a fresh connection (new client port) for the second request
