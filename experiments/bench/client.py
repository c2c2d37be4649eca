"""Send one streaming request and measure it, the way ``vllm bench serve`` does.

Timing (see :mod:`experiments.metrics.records`): the clock starts just before the POST; every
streamed chunk that carries output (``choices`` for ``/v1/completions``, any chunk for SGLang's
``/generate``) is timestamped; TTFT is the first, ITL the gaps between the following ones, E2E the
last. Output tokens are the server's ``usage.completion_tokens`` (``meta_info`` for ``/generate``),
falling back to the number of chunks if the server reports none.

A request never raises: an unreachable server, an HTTP error, an ``error`` event in the stream, a
stream that ends before ``[DONE]``, a stall longer than the read timeout, fewer output tokens than
asked for (``ignore_eos`` should make the server produce exactly ``max_tokens``) or a prompt the
server counts differently from the workload all give a record with ``ok=False`` and a one-line
``error``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from experiments.bench.endpoints import Endpoint
from experiments.metrics.records import RequestRecord, tpot_ms
from experiments.workloads.types import TraceRequest

MAX_ERROR_CHARS = 300


@dataclass
class _Stream:
    """What the stream has delivered so far (times from ``time.perf_counter``)."""

    chunk_times: list[float] = field(default_factory=list)
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    finish_reason: str | None = None
    done: bool = False
    error: str | None = None


def one_line(text: str) -> str:
    """``text`` on one line, at most ``MAX_ERROR_CHARS`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= MAX_ERROR_CHARS else flat[: MAX_ERROR_CHARS - 3] + "..."


def build_payload(api: str, endpoint: Endpoint, request: TraceRequest, prompt: str) -> tuple[str, dict[str, Any]]:
    """The URL path and JSON body for ``request`` with prompt text ``prompt`` (``api``: one of ``APIS``)."""
    priority = -request.priority if endpoint.priority_lower_first else request.priority
    if api == "completions":
        body: dict[str, Any] = {
            "model": endpoint.model, "prompt": prompt,
            "max_tokens": request.output_tokens, "ignore_eos": True, "temperature": 0.0, "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.session_id is not None:
            body["user"] = request.session_id
        path = "/v1/completions"
    else:
        body = {"text": prompt, "stream": True,
                "sampling_params": {"max_new_tokens": request.output_tokens, "ignore_eos": True, "temperature": 0.0}}
        path = "/generate"
    if priority:  # servers without priority scheduling reject any non-default priority
        body["priority"] = priority
    return path, body


def _read_event(api: str, obj: Any, stream: _Stream) -> None:
    """Update ``stream`` with one parsed ``data:`` event."""
    if not isinstance(obj, dict):
        stream.error = f"unexpected stream event {one_line(json.dumps(obj))}"
        return
    if "error" in obj or obj.get("object") == "error":
        err = obj.get("error", obj)
        message = err.get("message", err) if isinstance(err, dict) else err
        stream.error = f"error event mid-stream: {one_line(str(message))}"
        return
    if api == "completions":
        choices = obj.get("choices")
        if choices:
            stream.chunk_times.append(time.perf_counter())
            stream.finish_reason = choices[0].get("finish_reason") or stream.finish_reason
        usage = obj.get("usage")
        if isinstance(usage, dict):
            stream.completion_tokens = usage.get("completion_tokens", stream.completion_tokens)
            stream.prompt_tokens = usage.get("prompt_tokens", stream.prompt_tokens)
    else:
        stream.chunk_times.append(time.perf_counter())
        meta = obj.get("meta_info") or {}
        stream.completion_tokens = meta.get("completion_tokens", stream.completion_tokens)
        stream.prompt_tokens = meta.get("prompt_tokens", stream.prompt_tokens)
        finish = meta.get("finish_reason")
        stream.finish_reason = (finish.get("type") if isinstance(finish, dict) else finish) or stream.finish_reason


async def _consume(api: str, response: aiohttp.ClientResponse, stream: _Stream) -> None:
    """Read server-sent events until ``[DONE]``, an error event or the end of the body."""
    async for raw in response.content:
        line = raw.strip()
        if not line or line.startswith(b":") or not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            stream.done = True
            return
        try:
            obj = json.loads(data)
        except json.JSONDecodeError:
            stream.error = f"malformed stream event {one_line(data.decode(errors='replace'))}"
            return
        _read_event(api, obj, stream)
        if stream.error:
            return


def _verdict(request: TraceRequest, stream: _Stream) -> tuple[int, str | None]:
    """Output tokens received and the error (None if the request fully succeeded)."""
    received = stream.completion_tokens if stream.completion_tokens is not None else len(stream.chunk_times)
    if stream.error:
        return received, stream.error
    if not stream.chunk_times:
        return received, "stream ended without any output chunk"
    if not stream.done:
        return received, f"stream ended before [DONE] after {received} of {request.output_tokens} output tokens"
    if received != request.output_tokens:
        return received, (f"truncated output: received {received} of {request.output_tokens} tokens "
                          f"(finish_reason={stream.finish_reason})")
    if stream.prompt_tokens is not None and stream.prompt_tokens != request.input_tokens:
        return received, (f"server counted {stream.prompt_tokens} prompt tokens, workload asked for "
                          f"{request.input_tokens}: wrong --tokenizer for this server?")
    return received, None


async def send_request(session: aiohttp.ClientSession, api: str, endpoint: Endpoint, request: TraceRequest,
                       prompt: str, *, replay_start: float, repeat: int) -> RequestRecord:
    """POST ``request`` to ``endpoint``, stream the answer and return its record (never raises for I/O).

    ``replay_start`` is the ``time.perf_counter()`` at which the replay round began.
    """
    path, body = build_payload(api, endpoint, request, prompt)
    headers = {"X-Session-ID": request.session_id} if request.session_id is not None else {}
    stream = _Stream()
    sent = time.perf_counter()
    try:
        async with session.post(endpoint.url + path, json=body, headers=headers) as response:
            if response.status != 200:
                text = await response.text(errors="replace")
                stream.error = f"HTTP {response.status}: {one_line(text) or response.reason}"
            else:
                await _consume(api, response, stream)
    except asyncio.TimeoutError:
        stream.error = f"timed out after {len(stream.chunk_times)} chunks (server stalled or too slow)"
    except (aiohttp.ClientError, OSError) as exc:
        stream.error = f"{type(exc).__name__}: {one_line(str(exc)) or 'connection failed'}"
    received, error = _verdict(request, stream)
    times = stream.chunk_times
    ttft = (times[0] - sent) * 1000 if times and error is None else None
    e2e = (times[-1] - sent) * 1000 if times and error is None else None
    return RequestRecord(
        request_id=request.request_id, label=endpoint.label, endpoint=endpoint.url,
        arrival_s=request.arrival_s, start_s=sent - replay_start, input_tokens=request.input_tokens,
        output_tokens=received, ttft_ms=ttft, e2e_ms=e2e,
        tpot_ms=None if ttft is None or e2e is None else tpot_ms(e2e, ttft, received),
        itl_ms=[(b - a) * 1000 for a, b in zip(times, times[1:])] if error is None else [],
        ok=error is None, error=error, session_id=request.session_id, priority=request.priority, repeat=repeat,
    )
