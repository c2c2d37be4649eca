"""The HTTP router against in-process fake engines (tests/support/fake_engine.py, test
support): no request lost or served twice under engine failures, clean JSON errors, health
checks that remove and re-add engines, load polling."""

import asyncio
import json

from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fake_engine import BEHAVIOURS, FakeEngine
from router_cluster import RouterCluster


class Cluster(RouterCluster):
    """Fake engines + a router that forwards at once."""

    async def post(self, path, **kwargs):
        async with self.client.post(self.router_server.make_url(path), **kwargs) as response:
            return response.status, await response.text()


def _answer(status, text, stream):
    """(engine answer text or None, broken-stream flag) from a router response."""
    if status != 200:
        return None, False
    if not stream:
        return json.loads(text)["choices"][0]["text"], False
    events = [line[len("data: "):] for line in text.split("\n") if line.startswith("data: ")]
    if any("stream_broken" in event for event in events):
        return None, True
    assert events[-1] == "[DONE]", text
    return json.loads(events[0])["choices"][0]["text"], False


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(behaviours=st.lists(st.lists(st.sampled_from(BEHAVIOURS), min_size=1, max_size=4),
                           min_size=2, max_size=3),
       streams=st.lists(st.booleans(), min_size=1, max_size=12),
       policy=st.sampled_from(["scored", "round-robin", "cache-aware"]))
def test_no_request_lost_or_served_twice(behaviours, streams, policy):
    engines = [FakeEngine(f"e{i}", list(b)) for i, b in enumerate(behaviours)]

    async def scenario():
        async with Cluster(engines, policy=policy, max_attempts=len(engines)) as cluster:
            return await asyncio.gather(*(
                cluster.post("/v1/completions", json={"model": "fake-model", "prompt": f"p{i}",
                                                      "stream": stream})
                for i, stream in enumerate(streams)))

    results = asyncio.run(scenario())
    assert len(results) == len(streams)  # one answer per request, none hangs
    for i, ((status, text), stream) in enumerate(zip(results, streams)):
        prompt = f"p{i}"
        completions = [e.name for e in engines for done in e.completed if done == prompt]
        assert len(completions) <= 1, f"{prompt} served by {completions}"
        answer, broken = _answer(status, text, stream)
        if answer is not None:  # delivered: exactly the engine that completed it
            assert completions == [answer.split(":")[0]] and answer.endswith(":" + prompt)
        else:  # clean error: nobody completed it, and it is a documented error
            assert completions == []
            assert broken or json.loads(text)["error"]["code"] in ("upstream_failed",
                                                                   "no_healthy_engine")
    if any(set(b) == {"ok"} for b in behaviours):  # a reliable engine exists: all succeed
        # ...except streams already broken mid-way (they were sent before failing)
        assert all(status == 200 for status, _ in results)


def test_bad_input_gets_clean_errors_and_router_keeps_serving():
    async def scenario():
        async with Cluster([FakeEngine("e0")], max_body_bytes=2000) as cluster:
            got = [await cluster.post("/v1/completions", data=b"{not json"),
                   await cluster.post("/v1/completions", data=b"[1, 2]"),
                   await cluster.post("/v1/completions", json={"prompt": 3}),
                   await cluster.post("/v1/chat/completions", json={"messages": "hi"}),
                   await cluster.post("/v1/completions", json={"model": "nope", "prompt": "x"}),
                   await cluster.post("/v1/completions", data=b"x" * 5000),
                   await cluster.post("/v1/nothing", json={})]
            ok = await cluster.post("/v1/chat/completions", json={
                "model": "fake-model", "messages": [{"role": "user", "content": "hi"}]})
            return got, ok

    got, ok = asyncio.run(scenario())
    codes = [(status, json.loads(text)["error"]["code"]) for status, text in got]
    assert codes == [(400, "invalid_json"), (400, "invalid_json"), (400, "invalid_prompt"),
                     (400, "invalid_messages"), (404, "model_not_found"),
                     (413, "body_too_large"), (404, "http_404")]
    assert ok[0] == 200 and json.loads(ok[1])["choices"][0]["text"] == "e0:hi"


def test_health_checks_remove_and_readd_engines_and_metrics_count():
    async def scenario():
        engines = [FakeEngine("e0"), FakeEngine("e1")]
        async with Cluster(engines, policy="round-robin") as cluster:
            port = cluster.servers[1].port
            await cluster.servers[1].close()
            for _ in range(3):  # fail_threshold consecutive failures
                await cluster.pool.check_health()
            down = [e.healthy for e in cluster.pool.engines]
            statuses = [(await cluster.post("/v1/completions", json={"prompt": f"q{i}"}))[0]
                        for i in range(3)]
            cluster.servers[1] = TestServer(engines[1].application(), port=port)
            await cluster.servers[1].start_server()
            await cluster.pool.check_health()
            up = [e.healthy for e in cluster.pool.engines]
            for i in range(4):
                await cluster.post("/v1/completions", json={"prompt": f"r{i}"})
            health = await cluster.client.get(cluster.router_server.make_url("/health"))
            metrics = await (await cluster.client.get(
                cluster.router_server.make_url("/metrics"))).text()
            return down, statuses, up, health.status, metrics, engines

    down, statuses, up, health, metrics, engines = asyncio.run(scenario())
    assert down == [True, False] and statuses == [200, 200, 200] and up == [True, True]
    assert health == 200
    assert len(engines[1].completed) == 2  # back in the rotation: every other r-request
    assert "moesched_router_decision_seconds_count 7" in metrics
    assert 'moesched_router_engine_healthy{engine="' in metrics


def test_engine_answering_traffic_survives_slow_health_probes():
    async def scenario():
        engine = FakeEngine("e0", health_delay_s=0.3)
        async with Cluster([engine], health_timeout_s=0.05) as cluster:
            cluster.pool.engines[0].healthy = True  # the start-up probe timed out too
            statuses = []
            for i in range(5):  # probe fails, then a proxied answer proves the engine alive
                await cluster.pool.check_health()
                statuses.append((await cluster.post("/v1/completions", json={"prompt": f"x{i}"}))[0])
            alive = cluster.pool.engines[0].healthy
            for _ in range(3):  # silence and failed probes: removed
                await cluster.pool.check_health()
            return statuses, alive, cluster.pool.engines[0].healthy

    statuses, alive, after = asyncio.run(scenario())
    assert statuses == [200] * 5 and alive and not after


def test_a_dropped_connection_keeps_the_engine_in_rotation_a_refused_connect_does_not():
    async def scenario():
        engines = [FakeEngine("e0", ["refuse", "ok"]), FakeEngine("e1")]
        async with Cluster(engines, policy="round-robin") as cluster:
            first = [(await cluster.post("/v1/completions", json={"prompt": f"a{i}"}))[0] for i in range(2)]
            after_drop = cluster.pool.engines[0].healthy
            await cluster.servers[0].close()  # now a connect to e0 is refused
            second = [(await cluster.post("/v1/completions", json={"prompt": f"b{i}"}))[0] for i in range(2)]
            return first, after_drop, second, cluster.pool.engines[0].healthy, engines

    first, after_drop, second, after_refused, engines = asyncio.run(scenario())
    assert first == [200, 200] and second == [200, 200]  # retried on e1 both times
    assert after_drop and engines[0].completed == ["a1"]  # e0 dropped a0, stayed, served a1
    assert not after_refused


def test_no_healthy_engine_is_a_503():
    async def scenario():
        async with Cluster([FakeEngine("e0")]) as cluster:
            await cluster.servers[0].close()
            for _ in range(3):
                await cluster.pool.check_health()
            health = await cluster.client.get(cluster.router_server.make_url("/health"))
            return await cluster.post("/v1/completions", json={"prompt": "x"}), health.status

    (status, text), health = asyncio.run(scenario())
    assert (status, json.loads(text)["error"]["code"], health) == (503, "no_healthy_engine", 503)


def test_load_polling_reads_sglang_loads():
    async def scenario():
        engine = FakeEngine("e0")
        async with Cluster([engine]) as cluster:
            engine.received.extend(["a", "b"])  # two requests "in flight" on the fake engine
            await cluster.pool.poll_loads()
            return cluster.pool.engines[0]

    polled = asyncio.run(scenario())
    assert polled.load_kind == "sglang"
    assert (polled.load.running, polled.load.kv_capacity_tokens) == (2, 100000)
    assert polled.load.reported_s > 0


def test_client_hanging_up_mid_stream_does_not_take_the_engine_out():
    """Writing to a client that left raises a ConnectionResetError in aiohttp; that is the
    client's doing, so the engine stays in rotation (found on real engines: a benchmark client
    closing right after [DONE] made the router mark live engines failed)."""
    engine = FakeEngine("e0", stream_chunks=20000)

    async def scenario():
        async with Cluster([engine]) as cluster:
            for _ in range(3):
                async with cluster.client.post(cluster.router_server.make_url("/v1/completions"),
                                               json={"model": "fake-model", "prompt": "p",
                                                     "stream": True}) as response:
                    await response.content.readany()
                    response.close()  # hang up after the first bytes
                await asyncio.sleep(0.05)
            return cluster.pool.engines[0].healthy, dict(cluster.router.metrics.failures)

    healthy, failures = asyncio.run(scenario())
    assert healthy and not failures
