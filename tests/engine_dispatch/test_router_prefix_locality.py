"""``moesched route`` (a real subprocess) in front of two real SGLang CPU engines: a shared prefix
lands where it is cached (``make integration``; needs ``make engines``; a few minutes).

Workload: 8 documents of ~700 tokens each (together more than one engine's 4,096-token KV pool, so
an engine cannot cache them all), 12 requests per document in a seeded random order, 4 in flight,
prompt = document + a distinct question, no session header (stickiness plays no part). Per policy:
a document's "home" is the engine of its first answer (``X-Moesched-Engine``); locality = share of
its later requests answered by its home; cached share = the engines' own ``cached_tokens``
(``--enable-cache-report``) / prompt tokens over those later requests. The scored router (shipped
``configs/dispatch.toml``) must keep >= 90% locality, use both engines, and get a larger cached
share from the real engines than round robin on the same kind of workload.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from engine_dispatch.router.app import ENGINE_HEADER
from experiments.engines import EngineServer, ServerConfig, pick_free_port
from experiments.engines.commands import REPO_ROOT

pytestmark = pytest.mark.integration

DOCUMENTS = 8
PER_DOCUMENT = 12
IN_FLIGHT = 4
WORDS = "expert router token batch cache prefix engine decode prefill latency gate layer shard queue".split()


def _documents(seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"Document {seed}-{k}: " + " ".join(f"{rng.choice(WORDS)}{rng.randrange(100)}" for _ in range(140))
            for k in range(DOCUMENTS)]


class _Route:
    """``moesched route`` as a subprocess on a free loopback port."""

    def __init__(self, urls: list[str], policy: str, log: Path) -> None:
        self.port = pick_free_port()
        argv = [sys.executable, "-m", "experiments.cli", "route", "--worker-urls", *urls, "--policy", policy,
                "--port", str(self.port), "--health-timeout-s", "10"]
        if policy == "scored":
            argv += ["--config", str(REPO_ROOT / "configs" / "dispatch.toml")]
        self._log = log.open("w")
        self.process = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        self.url = f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, session: aiohttp.ClientSession, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "moesched route exited"
            try:
                async with session.get(self.url + "/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
        raise AssertionError("moesched route did not become healthy")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


async def _replay(url: str, model: str, seed: int) -> dict[str, float]:
    documents = _documents(seed)
    order = [k for k in range(DOCUMENTS) for _ in range(PER_DOCUMENT)]
    random.Random(seed).shuffle(order)
    answers: list[tuple[int, int, str, int, int]] = []  # (position, document, engine, cached, prompt)
    semaphore = asyncio.Semaphore(IN_FLIGHT)

    async def one(client: aiohttp.ClientSession, position: int, k: int) -> None:
        async with semaphore:
            async with client.post(url + "/v1/completions", json={
                    "model": model, "prompt": f"{documents[k]}\nQuestion {position}: summarise.",
                    "max_tokens": 2, "temperature": 0.0}) as resp:
                body = await resp.json()
                assert resp.status == 200, body
                usage = body["usage"]
                cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
                answers.append((position, k, resp.headers[ENGINE_HEADER], cached, usage["prompt_tokens"]))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900)) as client:
        await asyncio.gather(*(one(client, i, k) for i, k in enumerate(order)))
    answers.sort()
    home: dict[int, str] = {}
    local = later = cached = prompt = 0
    for _, k, engine, cached_tokens, prompt_tokens in answers:
        if k not in home:
            home[k] = engine
            continue
        later += 1
        local += engine == home[k]
        cached += cached_tokens
        prompt += prompt_tokens
    return {"locality": local / later, "cached_share": cached / prompt, "homes": len(set(home.values())),
            "mean_prompt_tokens": prompt / later}


async def _measure(urls: list[str], model: str, tmp_path: Path) -> dict[str, dict[str, float]]:
    results = {}
    for seed, policy in ((1, "scored"), (2, "round-robin")):  # fresh documents for each policy
        route = _Route(urls, policy, tmp_path / f"route-{policy}.log")
        try:
            async with aiohttp.ClientSession() as client:
                await route.wait_ready(client)
            results[policy] = await _replay(route.url, model, seed)
        finally:
            route.stop()
    return results


def test_shared_prefix_lands_where_cached(tmp_path: Path) -> None:
    configs = [ServerConfig("sglang", pick_free_port(), extra_args=("--enable-cache-report",)) for _ in range(2)]
    with EngineServer(configs[0], log_dir=tmp_path) as first, EngineServer(configs[1], log_dir=tmp_path) as second:
        results = asyncio.run(_measure([first.base_url, second.base_url], configs[0].model_name, tmp_path))
    for policy, r in results.items():
        print(f"\n{policy}: locality {r['locality']:.3f}, engines' cached share {r['cached_share']:.3f}, "
              f"homes on {r['homes']} engines, mean prompt {r['mean_prompt_tokens']:.0f} tokens")
    scored, rr = results["scored"], results["round-robin"]
    assert scored["locality"] >= 0.9
    assert scored["homes"] == 2  # the documents are spread, not piled on one engine
    assert scored["cached_share"] > rr["cached_share"] + 0.1
