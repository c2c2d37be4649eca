"""The router's HTTP application: OpenAI-compatible proxy with dispatch, retries and errors.

Per request to ``/v1/completions`` or ``/v1/chat/completions``:
1. read at most ``max_body_bytes`` (413 beyond), parse and validate (400), check the model
   against the healthy engines' ``/v1/models`` (404 ``model_not_found``; skipped while no engine
   lists models);
2. ask the dispatcher for an engine (503 ``no_healthy_engine`` when none is left);
3. forward the body unchanged. Nothing is sent to the client before the engine's first body
   byte arrives; until then a failure (connection error, timeout, 502/503/504 answer, stream
   ending before any byte) sends the request to another engine not yet tried, at most
   ``max_attempts`` engines in all (502 ``upstream_failed`` after that, or when no untried
   healthy engine is left). Non-streaming answers
   are read whole before replying, so they are retried on any failure; streams are passed
   through chunk by chunk, and a stream that breaks after its first byte ends with an SSE
   ``data: {"error": ...}`` event (status already sent, so no retry: never served twice);
4. tell the dispatcher when the first byte came back and when the request ended. Proxied
   answers carry ``X-Moesched-Engine: <index in --worker-urls>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from engine_dispatch.dispatcher import Dispatcher
from engine_dispatch.router.errors import RouterError
from engine_dispatch.router.late_binding import LateBinder
from engine_dispatch.router.metrics import RouterMetrics
from engine_dispatch.router.pool import EnginePool
from engine_dispatch.router.request_parse import ParsedRequest, Tokenize, parse_request

_RETRY_STATUSES = frozenset({502, 503, 504})
#: response header naming the index (in --worker-urls order) of the engine that answered
ENGINE_HEADER = "X-Moesched-Engine"
_HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length",
                          "content-encoding", "host", "te", "trailer", "upgrade",
                          "proxy-authorization", "proxy-authenticate"})


@dataclass(frozen=True)
class ProxySettings:
    max_body_bytes: int = 4 * 1024 * 1024
    max_attempts: int = 3
    request_timeout_s: float = 600.0
    block_tokens: int = 64

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1 or self.max_attempts < 1 or self.request_timeout_s <= 0:
            raise ValueError("max_body_bytes and max_attempts must be >= 1, request timeout > 0")


class _UpstreamFailed(Exception):
    """The engine failed before anything was sent to the client: try another."""


class _ClientGone(Exception):
    """The client closed its connection while we wrote to it (not the engine's fault)."""


async def _to_client(response: web.StreamResponse, data: bytes | None) -> None:
    """Write ``data`` to the client (None: end the stream); raises _ClientGone if it left."""
    try:
        if data is None:
            await response.write_eof()
        else:
            await response.write(data)
    except ConnectionResetError as exc:  # aiohttp's ClientConnectionResetError is one
        raise _ClientGone from exc


def _forward_headers(headers: aiohttp.typedefs.LooseHeaders) -> dict[str, str]:
    return {key: value for key, value in headers.items() if key.lower() not in _HOP_HEADERS}


class Router:
    """Holds the dispatcher, the engine pool and the metrics; its methods are the handlers."""

    def __init__(self, pool: EnginePool, dispatcher: Dispatcher, settings: ProxySettings,
                 tokenize: Tokenize | None = None, late: LateBinder | None = None) -> None:
        self.pool = pool
        self.dispatcher = dispatcher
        self.settings = settings
        self.tokenize = tokenize
        self.metrics = RouterMetrics()
        self.late = late
        self._ids = itertools.count()

    # --- application ---------------------------------------------------------------------------

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes,
                              middlewares=[self._errors])
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/metrics", self.prometheus)
        app.on_startup.append(lambda _: self.pool.start())
        app.on_cleanup.append(lambda _: self.pool.stop())
        if self.late is not None:
            late = self.late
            app.on_startup.append(lambda _: late.start())
            app.on_cleanup.append(lambda _: late.stop())
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler) -> web.StreamResponse:  # type: ignore[no-untyped-def]
        try:
            return await handler(request)
        except RouterError as exc:
            self.metrics.errors[exc.code] += 1
            return exc.response()
        except web.HTTPRequestEntityTooLarge:
            self.metrics.errors["body_too_large"] += 1
            return RouterError(413, "body_too_large",
                               f"request body exceeds {self.settings.max_body_bytes} bytes"
                               ).response()
        except web.HTTPException as exc:  # 404 / 405 from routing
            self.metrics.errors[f"http_{exc.status}"] += 1
            return RouterError(exc.status, f"http_{exc.status}", exc.reason).response()

    # --- simple endpoints ---------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        healthy = sum(engine.healthy for engine in self.pool.engines)
        body = {"status": "ok" if healthy else "no_healthy_engine", "healthy_engines": healthy,
                "engines": len(self.pool.engines)}
        return web.json_response(body, status=200 if healthy else 503)

    async def models(self, request: web.Request) -> web.Response:
        data = [{"id": name, "object": "model", "owned_by": "moesched-router"}
                for name in sorted(self.pool.known_models())]
        return web.json_response({"object": "list", "data": data})

    async def prometheus(self, request: web.Request) -> web.Response:
        extra = [] if self.late is None else self.late.metrics.render(self.late.held_count())
        text = self.metrics.render({e.url: e.healthy for e in self.pool.engines}, extra)
        return web.Response(text=text, content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    # --- proxy --------------------------------------------------------------------------------

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._proxy(request, "/v1/completions", chat=False)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._proxy(request, "/v1/chat/completions", chat=True)

    async def _proxy(self, request: web.Request, path: str, chat: bool) -> web.StreamResponse:
        raw = await request.read()
        parsed = parse_request(raw, chat, request.headers, f"r{next(self._ids)}",
                               self.settings.block_tokens, self.tokenize)
        models = self.pool.known_models()
        if parsed.model is not None and models and parsed.model not in models:
            raise RouterError(404, "model_not_found",
                              f"model {parsed.model!r} is not served; available: "
                              f"{', '.join(sorted(models))}")
        headers = _forward_headers(request.headers)
        tried: set[int] = set()
        for attempt in range(self.settings.max_attempts):
            engine_id = self._choose(parsed, tried)
            if self.late is not None:
                engine_id = await self.late.acquire(request, parsed, engine_id, tried)
            tried.add(engine_id)
            if attempt:
                self.metrics.retries += 1
            try:
                return await self._forward(request, parsed, engine_id, path, raw, headers)
            except _UpstreamFailed:
                continue
        raise RouterError(502, "upstream_failed",
                          f"{len(tried)} engine(s) failed before answering")

    def _choose(self, parsed: ParsedRequest, tried: set[int]) -> int:
        started = time.perf_counter()
        loads = self.pool.loads_for(parsed.model, tried)
        now = time.monotonic()
        try:
            engine_id = self.dispatcher.pick(parsed.dispatch, loads, now)
        except RuntimeError as exc:
            if tried:
                raise RouterError(502, "upstream_failed", f"{len(tried)} engine(s) failed before "
                                  "answering and no other healthy engine is left") from exc
            raise RouterError(503, "no_healthy_engine", "no healthy engine can take the request"
                              ) from exc
        self.dispatcher.on_dispatched(parsed.dispatch, engine_id, now)
        self.metrics.observe_decision(time.perf_counter() - started)
        return engine_id

    async def _forward(self, request: web.Request, parsed: ParsedRequest, engine_id: int,
                       path: str, raw: bytes, headers: dict[str, str]) -> web.StreamResponse:
        """Send to one engine; raises _UpstreamFailed if it failed before the client saw a byte."""
        engine = self.pool.engines[engine_id]
        self.metrics.requests[engine.url] += 1
        assert self.pool.session is not None
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout_s)
        response: web.StreamResponse | None = None
        output_chunks = 0
        try:
            async with self.pool.session.post(engine.url + path, data=raw, headers=headers,
                                               timeout=timeout) as upstream:
                if upstream.status in _RETRY_STATUSES:
                    await upstream.read()
                    raise _UpstreamFailed
                out_headers = _forward_headers(upstream.headers)
                out_headers[ENGINE_HEADER] = str(engine_id)
                if not parsed.stream:
                    body = await upstream.read()
                    self._first_token(parsed, engine_id)
                    return web.Response(body=body, status=upstream.status, headers=out_headers)
                async for chunk in upstream.content.iter_any():
                    if response is None:
                        self._first_token(parsed, engine_id)
                        response = web.StreamResponse(status=upstream.status, headers=out_headers)
                        try:
                            await response.prepare(request)
                        except ConnectionResetError as exc:
                            raise _ClientGone from exc
                    await _to_client(response, chunk)
                    output_chunks += 1
                if response is None:  # the stream ended without a byte
                    raise _UpstreamFailed
                await _to_client(response, None)
                return response
        except _ClientGone:  # a client that hangs up is no reason to take the engine out
            self.metrics.errors["client_closed"] += 1
            assert response is not None
            return response
        except (aiohttp.ClientError, asyncio.TimeoutError, _UpstreamFailed) as exc:
            self.metrics.failures[engine.url] += 1
            # could not connect, or no answer in time: out of rotation now. A connection the
            # engine closed before answering (e.g. an idle keep-alive connection it timed out as a
            # request went out on it, or a crash) only counts: its next connect, or the probes,
            # decide. Found on real engines: two such drops took the one surviving engine of the
            # failover test out, and 736 of 1,000 requests got 503 before the next probe.
            if isinstance(exc, (aiohttp.ClientConnectorError, asyncio.TimeoutError)):
                self.pool.mark_failed(engine_id)
            if response is None:
                raise _UpstreamFailed from exc
            self.metrics.errors["stream_broken"] += 1
            error = {"error": {"message": f"engine failed mid-stream: {type(exc).__name__}",
                               "type": "server_error", "code": "stream_broken"}}
            with contextlib.suppress(_ClientGone):
                await _to_client(response, f"data: {json.dumps(error)}\n\n".encode())
                await _to_client(response, None)
            return response
        finally:
            self.dispatcher.on_finished(parsed.dispatch, engine_id, time.monotonic(),
                                        output_chunks)
            if self.late is not None:
                self.late.finished(parsed.dispatch.request_id)

    def _first_token(self, parsed: ParsedRequest, engine_id: int) -> None:
        self.pool.mark_alive(engine_id)
        self.dispatcher.on_first_token(parsed.dispatch, engine_id, time.monotonic())
