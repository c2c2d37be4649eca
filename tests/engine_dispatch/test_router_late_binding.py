"""The router with late binding (engine_dispatch.router.late_binding) against in-process fake engines
(tests/support/fake_engine.py): under random arrivals, slow and failing engines, engine failures
while requests are held and rebalancer moves, every request is answered once, served by at most one
engine, never sent to an engine after it failed; a client that leaves while held is never sent."""

import asyncio
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine_dispatch.late_binding import HoldParams, LateBindingConfig
from engine_dispatch.rebalance import RebalanceConfig, SelectiveRebalancer
from engine_dispatch.router.late_binding import LateBinder
from fake_engine import FakeEngine
from router_cluster import RouterCluster
from perf_model.presets import preset_model

MODEL = preset_model("qwen3-30b-a3b-h100")
#: moves whenever a queue is longer than another (no migration cost, every held request a
#: candidate, one prefill step per token so every token queued ahead counts)
EAGER = RebalanceConfig(period_s=0.01, min_interval_s=0.01, long_wait_s=0.0, migration_cost_s=0.0,
                        overload_abs_s=0.0, cooldown_s=0.0, max_moves_per_s=1000.0, max_burst=8,
                        chunk_tokens=1)


class LateCluster(RouterCluster):
    """Fake engines behind a late-binding router on loopback, in this event loop."""

    def __init__(self, engines, max_in_flight=1, rebalance=EAGER, policy="round-robin"):
        config = LateBindingConfig(HoldParams(max_in_flight=max_in_flight, tick_s=0.005), rebalance)
        super().__init__(engines, policy=policy, max_attempts=len(engines),
                         late=lambda pool, dispatcher: LateBinder(config, SelectiveRebalancer(rebalance, MODEL),
                                                                  pool, dispatcher))

    async def post(self, prompt, stream=False, delay_s=0.0):
        await asyncio.sleep(delay_s)
        async with self.client.post(self.router_server.make_url("/v1/completions"), json={
                "model": "fake-model", "prompt": prompt, "stream": stream}) as response:
            return response.status, await response.text()

    async def metrics(self):
        async with self.client.get(self.router_server.make_url("/metrics")) as response:
            return await response.text()


def _served_by(status, text, stream):
    if status != 200:
        return None
    if not stream:
        return json.loads(text)["choices"][0]["text"]
    events = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
    return None if any("stream_broken" in e for e in events) else json.loads(events[0])["choices"][0]["text"]


def _metric(text, name):
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrivals=st.lists(st.tuples(st.floats(0.0, 0.05), st.booleans()), min_size=2, max_size=14),
       delays=st.lists(st.sampled_from([0.0, 0.02, 0.08]), min_size=2, max_size=3),
       behaviours=st.lists(st.sampled_from(["ok", "ok", "ok", "unavailable", "refuse"]),
                           min_size=1, max_size=3),
       fail_at=st.one_of(st.none(), st.floats(0.0, 0.08)),
       max_in_flight=st.integers(1, 2))
def test_late_binding_loses_and_duplicates_nothing(arrivals, delays, behaviours, fail_at, max_in_flight):
    engines = [FakeEngine(f"e{i}", delay_s=d, behaviours=list(behaviours) if i == 0 else ["ok"])
               for i, d in enumerate(delays)]
    sent_at_failure: list[int] = []
    sent_to_0: list[int] = []

    async def scenario():
        async with LateCluster(engines, max_in_flight) as cluster:
            async def fail_engine_0():
                await asyncio.sleep(fail_at)
                cluster.pool.mark_failed(0)
                sent_at_failure.append(cluster.router.metrics.requests[cluster.pool.engines[0].url])

            tasks = [cluster.post(f"p{i}", stream, delay) for i, (delay, stream) in enumerate(arrivals)]
            if fail_at is not None:
                tasks.append(fail_engine_0())
            results = await asyncio.gather(*tasks)
            metrics = await cluster.metrics()
            sent_to_0.append(cluster.router.metrics.requests[cluster.pool.engines[0].url])
            return results[:len(arrivals)], metrics, cluster.late.held_count()

    results, metrics, held_after = asyncio.run(scenario())
    assert held_after == 0 and _metric(metrics, "moesched_router_held") == 0
    for i, ((status, text), (_, stream)) in enumerate(zip(results, arrivals)):
        served = [e.name for e in engines for done in e.completed if done == f"p{i}"]
        assert len(served) <= 1, f"p{i} served by {served}"
        answer = _served_by(status, text, stream)
        if answer is not None:
            assert served == [answer.split(":")[0]]
        else:
            assert served == [] and json.loads(text)["error"]["code"] in (
                "upstream_failed", "no_healthy_engine")
        assert status == 200 or "refuse" in behaviours or "unavailable" in behaviours
    if sent_at_failure:  # the router sends nothing to engine 0 once it is marked failed
        assert sent_to_0 == sent_at_failure


def test_held_requests_move_to_the_idle_engine_and_metrics_show_it():
    engines = [FakeEngine("slow", delay_s=0.15), FakeEngine("fast")]

    async def scenario():
        async with LateCluster(engines, max_in_flight=1, policy="round-robin") as cluster:
            cluster.pool.engines[1].healthy = False  # everything lands on the slow engine ...
            first = [asyncio.create_task(cluster.post(f"p{i}")) for i in range(5)]
            await asyncio.sleep(0.05)
            cluster.pool.engines[1].healthy = True   # ... until the fast one comes back
            results = await asyncio.gather(*first)
            return results, await cluster.metrics()

    results, metrics = asyncio.run(scenario())
    assert all(status == 200 for status, _ in results)
    assert sorted(engines[0].completed + engines[1].completed) == [f"p{i}" for i in range(5)]
    moved = _metric(metrics, "moesched_router_moves_total")
    assert moved >= 1 and len(engines[1].completed) >= 1
    assert _metric(metrics, "moesched_router_held_total") >= 3
    assert _metric(metrics, "moesched_router_hold_seconds_count") == _metric(
        metrics, "moesched_router_held_total")


def test_client_leaving_while_held_is_never_sent():
    engines = [FakeEngine("e0", delay_s=0.3)]

    async def scenario():
        async with LateCluster(engines, max_in_flight=1) as cluster:
            busy = asyncio.create_task(cluster.post("busy"))
            await asyncio.sleep(0.05)
            leaver = asyncio.create_task(cluster.post("leaver"))
            await asyncio.sleep(0.05)
            leaver.cancel()  # closes the client connection while the request is held
            await asyncio.sleep(0.1)
            status, _ = await busy
            await asyncio.sleep(0.05)
            return status, await cluster.metrics()

    status, metrics = asyncio.run(scenario())
    assert status == 200
    assert engines[0].received == ["busy"]
    assert _metric(metrics, "moesched_router_withdrawn_total") == 1
    assert _metric(metrics, "moesched_router_held") == 0


def test_late_binding_off_by_default():
    from engine_dispatch.router.cli import add_arguments, build_router
    import argparse
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert build_router(parser.parse_args(["--worker-urls", "http://a:1"])).late is None
    on = build_router(parser.parse_args(["--worker-urls", "http://a:1", "http://b:2",
                                         "--late-binding", "--hold-max-in-flight", "3"]))
    assert on.late is not None and on.late.config.hold.max_in_flight == 3
