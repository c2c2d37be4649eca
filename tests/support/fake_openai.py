"""TEST SUPPORT ONLY: an in-process fake of an OpenAI-compatible streaming server (and SGLang's /generate).

It exists so the benchmark client's tests can run in seconds without a real engine. It generates
no text of any meaning: each output "token" is the word `` tok``. It can misbehave on purpose:

- ``"ok"``: streams ``max_tokens`` chunks (one token each), a usage chunk, then ``[DONE]``.
- ``"http_error"``: answers HTTP 500 with a JSON error body.
- ``"error_midstream"``: streams two tokens, then an ``{"error": ...}`` event.
- ``"truncate"``: streams half the tokens with ``finish_reason="length"``, usage and ``[DONE]``.
- ``"drop"``: streams two tokens, then closes the connection without ``[DONE]``.
- ``"stall"``: streams one token, then sends nothing for ``stall_s`` seconds.

``mode_for(body)`` picks a mode per request (default: ``mode`` for all). With a ``tokenizer`` the
usage reports the prompt's true token count; without one, ``max(1, len(prompt.split()))``.
``requests`` keeps every JSON body received. Run it in a background thread::

    with FakeOpenAIServer() as server:
        url = server.url
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from typing import Any, Callable

from aiohttp import web

MODES = ("ok", "http_error", "error_midstream", "truncate", "drop", "stall")


def unused_port() -> int:
    """A localhost TCP port nobody listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeOpenAIServer:
    """A fake streaming server on 127.0.0.1 running in its own thread and event loop."""

    def __init__(self, mode: str = "ok", *, model: str = "fake-model", token_delay_s: float = 0.002,
                 stall_s: float = 30.0, tokenizer: Any = None,
                 mode_for: Callable[[dict[str, Any]], str] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        self.mode, self.model, self.token_delay_s, self.stall_s = mode, model, token_delay_s, stall_s
        self.tokenizer = tokenizer
        self.mode_for = mode_for or (lambda body: self.mode)
        self.requests: list[dict[str, Any]] = []
        self.port = unused_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _prompt_tokens(self, prompt: str) -> int:
        if self.tokenizer is not None:
            return len(self.tokenizer.encode(prompt).ids)
        return max(1, len(prompt.split()))

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def _stream(self, request: web.Request, native: bool) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        mode = self.mode_for(body)
        if mode == "http_error":
            return web.json_response({"object": "error", "message": "internal failure"}, status=500)
        if native:
            prompt, max_tokens = body["text"], body["sampling_params"]["max_new_tokens"]
        else:
            prompt, max_tokens = body["prompt"], body["max_tokens"]
        prompt_tokens = self._prompt_tokens(prompt)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        produce = max(1, max_tokens // 2) if mode == "truncate" else max_tokens

        async def send(obj: Any) -> None:
            await resp.write(b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n")

        for i in range(produce):
            await asyncio.sleep(self.token_delay_s)
            last = i == produce - 1
            finish = ("length" if last else None)
            if native:
                await send({"text": " tok" * (i + 1), "meta_info": {
                    "prompt_tokens": prompt_tokens, "completion_tokens": i + 1,
                    "finish_reason": {"type": "length"} if last else None}})
            else:
                await send({"object": "text_completion", "choices": [{"index": 0, "text": " tok", "finish_reason": finish}]})
            if mode == "stall" and i == 0:
                await asyncio.sleep(self.stall_s)
            if mode in ("error_midstream", "drop") and i == 1:
                if mode == "drop":
                    request.transport.close()
                    return resp
                await send({"error": {"message": "engine crashed mid-stream", "code": 500}})
                return resp
        if not native:
            await send({"object": "text_completion", "choices": [],
                        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": produce}})
        await send(b"[DONE]")
        await resp.write_eof()
        return resp

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, native=False)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, native=True)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/generate", self._generate)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:  # handlers still stalling
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
