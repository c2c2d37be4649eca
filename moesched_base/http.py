"""HTTP client connectors for moesched's clients of serving engines (the router, the benchmark).

Background: SGLang 0.5.23 and vLLM 0.32 serve HTTP with uvicorn, which starts a 5 s idle timer on a
connection when a response completes and closes the connection when it fires
(``timeout_keep_alive``: ``SGLANG_TIMEOUT_KEEP_ALIVE``, ``VLLM_HTTP_TIMEOUT_KEEP_ALIVE``). A client
reusing such a connection races that timer, and an overloaded server whose event loop stalls runs
the due timer before it reads a request already waiting on the socket: the request fails
(``ServerDisconnectedError``, connection reset, "Can not write request body"). aiohttp keeps idle
connections 15 s by default.
"""

from __future__ import annotations

import aiohttp


def bench_connector() -> aiohttp.TCPConnector:
    """The benchmark's: no connection limit (the engine sees the trace's concurrency) and a new
    connection per request, so no request can meet a closing connection. Measured 2026-12-06 on the
    2-core CPU host, overloaded SGLang DP-2 replays of 384 requests: 9-49 failed per replay with
    aiohttp's default keep-alive, 10-32 with a 2 s one, none in the 28 replays (10,752 requests) run
    with a connection per request. Create it inside the event loop."""
    return aiohttp.TCPConnector(limit=0, force_close=True)


def proxy_connector() -> aiohttp.TCPConnector:
    """The router's: no connection limit and aiohttp's own keep-alive (idle connections reused for
    15 s). Chosen on the router's real-engine failover test (two SGLang CPU servers, 1,000
    requests, 16 in flight; session requests on their main engine before the kill, of 300): this
    connector 283 and 284 on 2026-12-06, a 2 s keep-alive 259 and 262, a new connection per request
    237, 254 and 260 (and two runs over 270); but this connector again gave 239 and 293 on
    2026-12-07, so the runs do not separate the three. A request lost to a connection the engine
    closes before answering is retried on another engine (``max_attempts``) and does not take the
    engine out of rotation (``engine_dispatch.router.app``). Create it inside the event loop."""
    return aiohttp.TCPConnector(limit=0)
