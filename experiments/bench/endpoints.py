"""Endpoints to benchmark: parsing ``label=URL`` and the preflight check that each one is up."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from urllib.parse import urlparse

import aiohttp

LABEL_RE = re.compile(r"^[A-Za-z0-9_.:+-]+$")
#: which HTTP API the client speaks: OpenAI completions (vLLM, SGLang, routers) or SGLang's native one
APIS = ("completions", "generate")


@dataclass(frozen=True)
class Endpoint:
    """A server to replay against.

    Attributes:
        label: name of the run in reports (unique within a benchmark).
        url: base URL, e.g. ``http://127.0.0.1:8000`` (no trailing ``/v1``).
        model: model name sent with each request (filled in by :func:`preflight`).
        priority_lower_first: the server treats *lower* priority values as more urgent (vLLM), so
            the workload's priority (larger = more urgent) is negated when sent.
    """

    label: str
    url: str
    model: str = ""
    priority_lower_first: bool = False


def parse_endpoint(text: str) -> Endpoint:
    """Parse ``label=URL``; raises ``ValueError`` naming ``--endpoint`` and what was expected."""
    label, sep, url = text.partition("=")
    parsed = urlparse(url)
    if not sep or not LABEL_RE.match(label) or parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"--endpoint: expected LABEL=http://HOST:PORT (label of letters, digits, _.:+-), got {text!r}")
    base = url.rstrip("/")
    if base.endswith("/v1"):
        base = base[:-3]
    return Endpoint(label=label, url=base)


async def _served_models(session: aiohttp.ClientSession, endpoint: Endpoint) -> list[str]:
    async with session.get(endpoint.url + "/v1/models") as resp:
        if resp.status != 200:
            raise ValueError(f"HTTP {resp.status} from {endpoint.url}/v1/models")
        body = await resp.json(content_type=None)
    models = [m.get("id") for m in body.get("data", []) if isinstance(m, dict)] if isinstance(body, dict) else []
    return [m for m in models if isinstance(m, str)]


async def preflight(endpoints: list[Endpoint], model: str | None, timeout_s: float = 10.0) -> list[Endpoint]:
    """Check every endpoint answers ``GET /v1/models`` and serves ``model``; fill in the model name.

    With ``model`` None each endpoint's first served model is used. Raises ``ConnectionError`` with
    one line naming the endpoint and the cause.
    """
    checked = []
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for ep in endpoints:
            try:
                served = await _served_models(session, ep)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, OSError) as exc:
                reason = str(exc) or type(exc).__name__
                raise ConnectionError(f"endpoint {ep.label} ({ep.url}) is not reachable: {reason}") from None
            if not served:
                raise ConnectionError(f"endpoint {ep.label} ({ep.url}) serves no model (empty /v1/models)")
            if model is not None and model not in served:
                raise ConnectionError(f"endpoint {ep.label} ({ep.url}) does not serve model {model!r}; "
                                      f"it serves {', '.join(served)}")
            checked.append(Endpoint(ep.label, ep.url, model or served[0], ep.priority_lower_first))
    return checked
