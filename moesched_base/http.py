"""The HTTP client connector every moesched client of a serving engine uses (router, benchmark)."""

from __future__ import annotations

import aiohttp

#: seconds an idle upstream connection is kept for reuse. SGLang 0.5.23 and vLLM 0.32 serve HTTP
#: with uvicorn, which closes a keep-alive connection idle for 5 s (``timeout_keep_alive`` = 5:
#: ``SGLANG_TIMEOUT_KEEP_ALIVE``, ``VLLM_HTTP_TIMEOUT_KEEP_ALIVE``); aiohttp keeps idle
#: connections 15 s by default, so a request written on a connection the server is closing fails
#: with ``ServerDisconnectedError`` (measured: 9-49 of 384 requests per replay on this machine,
#: clustered ~5 s after bursts of completions). Staying well under the server's limit avoids it.
UPSTREAM_KEEPALIVE_S = 2.0


def upstream_connector() -> aiohttp.TCPConnector:
    """No connection limit (the engine sees the client's real concurrency), idle connections
    dropped after :data:`UPSTREAM_KEEPALIVE_S`. Create it inside the running event loop."""
    return aiohttp.TCPConnector(limit=0, keepalive_timeout=UPSTREAM_KEEPALIVE_S)
