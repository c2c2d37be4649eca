"""TEST SUPPORT ONLY: an in-process fake OpenAI-compatible engine for the router's tests and the
router-hop part of ``experiments/benchmarks/dispatch_overhead.py`` (which puts this directory on
``sys.path``). It generates no text: it echoes the prompt, and fails on purpose when told to.

Each request is answered according to the next entry of the engine's ``behaviours`` list (cycled):
``ok``; ``refuse`` (close the connection before any response byte); ``unavailable`` (HTTP 503);
``break`` (send the status and part of the body, then close the connection). ``completed`` lists
the prompts whose full answer the engine wrote, ``received`` every prompt it got.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from aiohttp import web

BEHAVIOURS = ("ok", "refuse", "unavailable", "break")


@dataclass
class FakeEngine:
    """One fake engine; ``application()`` gives its aiohttp app."""

    name: str
    behaviours: list[str] = field(default_factory=lambda: ["ok"])
    model: str = "fake-model"
    stream_chunks: int = 3
    delay_s: float = 0.0
    health_delay_s: float = 0.0
    received: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/completions", self._complete)
        app.router.add_post("/v1/chat/completions", self._complete)
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/loads", self._loads)
        return app

    def answer_text(self, prompt: str) -> str:
        """What this engine answers for ``prompt``."""
        return f"{self.name}:{prompt}"

    async def _health(self, request: web.Request) -> web.Response:
        if self.health_delay_s:
            await asyncio.sleep(self.health_delay_s)
        return web.json_response({"status": "ok"})

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list",
                                  "data": [{"id": self.model, "object": "model"}]})

    async def _loads(self, request: web.Request) -> web.Response:
        in_flight = len(self.received) - len(self.completed)
        return web.json_response({"loads": [{
            "dp_rank": 0, "num_running_reqs": max(0, in_flight), "num_waiting_reqs": 0,
            "num_waiting_uncached_tokens": 0, "num_used_tokens": 0,
            "max_total_num_tokens": 100000}]})

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        prompt = body.get("prompt") if "prompt" in body else body["messages"][-1]["content"]
        behaviour = self.behaviours[len(self.received) % len(self.behaviours)]
        self.received.append(prompt)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if behaviour == "refuse":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)  # never reaches the client: the socket is closed
        if behaviour == "unavailable":
            return web.json_response({"error": "busy"}, status=503)
        text = self.answer_text(prompt)
        if not body.get("stream"):
            payload = json.dumps({"choices": [{"text": text}], "engine": self.name}).encode()
            if behaviour == "break":
                response = web.StreamResponse(headers={"Content-Length": str(len(payload))})
                await response.prepare(request)
                await response.write(payload[: len(payload) // 2])
                assert request.transport is not None
                request.transport.close()
                return response
            self.completed.append(prompt)
            return web.Response(body=payload, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index in range(self.stream_chunks):
            piece = text if index == 0 else ""
            await response.write(
                f"data: {json.dumps({'choices': [{'text': piece}]})}\n\n".encode())
            if behaviour == "break":
                assert request.transport is not None
                request.transport.close()
                return response
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        self.completed.append(prompt)
        return response
