"""sjf-aging: static key vs brute force, exact SJF without aging, the starvation bound."""

import math

import pytest
from hypothesis import given, settings, strategies as st

from request_sched.policies import create_queue
from request_sched.types import WaitingRequest

# (enqueue offset, prompt tokens (multiple of 16), output tokens, priority)
_specs = st.lists(
    st.tuples(st.floats(0, 50), st.integers(1, 256).map(lambda k: 16 * k),
              st.integers(1, 2000), st.integers(0, 3)),
    min_size=1, max_size=40,
)


def _requests(specs):
    return [WaitingRequest(f"r{i}", t, prompt_tokens=p, max_new_tokens=o, priority=pr)
            for i, (t, p, o, pr) in enumerate(specs)]


def _queue(model, **options):
    options.setdefault("output_estimate", "max_tokens")
    return create_queue("sjf-aging", step_model=model, **options)


@settings(deadline=None)  # timing varies on a shared machine
@given(specs=_specs, rate=st.floats(0, 5), max_wait=st.floats(0.5, 60),
       weight=st.floats(0, 2), later=st.floats(0, 100))
def test_static_key_agrees_with_brute_force_ranking(linear_model, specs, rate, max_wait, weight, later):
    q = _queue(linear_model, aging_rate=rate, max_wait_s=max_wait, priority_weight_s=weight)
    reqs = _requests(specs)
    for r in reqs:
        q.add(r, now=r.enqueue_s)
    now = max(r.enqueue_s for r in reqs) + later
    order = q.ordered(now)
    assert sorted(r.request_id for r in order) == sorted(r.request_id for r in reqs)
    overdue = [r.enqueue_s < now - max_wait for r in order]
    assert overdue == sorted(overdue, reverse=True)  # overdue requests first
    for a, b, a_late, b_late in zip(order, order[1:], overdue, overdue[1:]):
        if a_late and b_late:
            assert a.enqueue_s <= b.enqueue_s  # FCFS among overdue
        elif not a_late and not b_late:  # time-varying score, re-computed now, never decreases
            assert q.score(a, now) <= q.score(b, now) + 1e-9
    assert [q.pop(now).request_id for _ in reqs] == [r.request_id for r in order]


@settings(deadline=None)  # timing varies on a shared machine
@given(specs=_specs, decode_weight=st.floats(0, 2))
def test_without_aging_and_with_exact_sizes_the_order_is_exact_sjf(linear_model, specs, decode_weight):
    q = _queue(linear_model, aging_rate=0.0, max_wait_s=math.inf, priority_weight_s=0.0,
               decode_weight=decode_weight)
    m = linear_model
    decode_s = m.per_seq_s + m.per_kv_s * 1024  # reference batch: 32 seqs of 1024 tokens

    def true_size(r):  # independent of the estimator: prefill + weight x output x marginal decode
        return (m.per_prefill_s + m.per_kv_s) * r.prompt_tokens + decode_weight * r.max_new_tokens * decode_s

    reqs = _requests(specs)
    for r in reqs:
        q.add(r, now=0.0)
    popped = [q.pop(now=100.0) for _ in reqs]
    sizes = [true_size(r) for r in popped]
    assert all(a <= b + 1e-12 for a, b in zip(sizes, sizes[1:]))


@settings(max_examples=60, deadline=None)
@given(gaps=st.lists(st.floats(0.001, 3.0), min_size=1, max_size=60),
       outputs=st.lists(st.integers(1, 4000), min_size=60, max_size=60),
       step=st.floats(0.05, 2.0), max_wait=st.floats(0.5, 10.0), rate=st.floats(0, 1))
def test_every_request_is_served_within_the_starvation_bound(
        linear_model, gaps, outputs, step, max_wait, rate):
    """A server pops one request every ``step`` s. Request r arrives at a_r; let t1 be the first
    pop after it is overdue (a_r + max_wait) and n the earlier arrivals still waiting at t1. Then r
    is served by t1 + n * step, i.e. within max_wait + (n + 1) steps: one step if nothing that
    arrived before it is still waiting (no order can serve it sooner than those)."""
    q = _queue(linear_model, aging_rate=rate, max_wait_s=max_wait)
    arrivals = []
    t = 0.0
    for i, gap in enumerate(gaps):
        t += gap
        arrivals.append(WaitingRequest(f"r{i}", t, prompt_tokens=512, max_new_tokens=outputs[i]))
    served: dict[str, float] = {}
    k, nxt = 0, 0
    while len(served) < len(arrivals):
        now = k * step
        while nxt < len(arrivals) and arrivals[nxt].enqueue_s <= now:
            q.add(arrivals[nxt], now)
            nxt += 1
        if len(q):
            served[q.pop(now).request_id] = now
        k += 1
    for r in arrivals:
        t1 = math.floor((r.enqueue_s + max_wait) / step + 1) * step  # first pop time > overdue
        earlier_waiting = sum(1 for e in arrivals
                              if e.enqueue_s < r.enqueue_s and served[e.request_id] >= t1)
        assert served[r.request_id] <= t1 + earlier_waiting * step + 1e-9


def test_long_request_is_not_starved_by_a_stream_of_short_ones(linear_model):
    q = _queue(linear_model, aging_rate=0.0, max_wait_s=5.0)
    q.add(WaitingRequest("long", 0.0, prompt_tokens=8192, max_new_tokens=2000), 0.0)
    step, served_at = 0.5, None
    for k in range(100):
        now = k * step
        q.add(WaitingRequest(f"s{k}", now, prompt_tokens=16, max_new_tokens=1), now)
        if q.pop(now).request_id == "long":
            served_at = now
            break
    assert served_at is not None and 5.0 < served_at <= 5.0 + step


def test_priority_and_aging_move_requests_forward(linear_model):
    q = _queue(linear_model, aging_rate=0.0, priority_weight_s=100.0)
    q.add(WaitingRequest("big-urgent", 0.0, 4096, 500, priority=1), 0.0)
    q.add(WaitingRequest("small", 0.0, 16, 1), 0.0)
    assert q.peek(0.0).request_id == "big-urgent"
    aged = _queue(linear_model, aging_rate=1.0, max_wait_s=math.inf)
    aged.add(WaitingRequest("old-big", 0.0, 4096, 500), 0.0)
    aged.add(WaitingRequest("new-small", 50.0, 16, 1), 50.0)
    assert aged.peek(50.0).request_id == "old-big"  # 50 s of waiting outweigh the size gap


def test_remove_readd_and_errors(linear_model):
    q = _queue(linear_model)
    a, b = WaitingRequest("a", 0.0, 64, 10), WaitingRequest("b", 0.0, 4096, 10)
    q.add(a, 0.0)
    q.add(b, 0.0)
    q.remove(a)
    assert len(q) == 1 and q.pop(0.0) is b
    q.add(b, 1.0)  # popped but not admitted: goes back
    assert q.peek(1.0) is b
    with pytest.raises(ValueError, match="already waiting"):
        q.add(b, 1.0)
    with pytest.raises(ValueError, match="max_wait_s"):
        _queue(linear_model, max_wait_s=0)


def test_finished_requests_train_the_predictor(linear_model):
    q = _queue(linear_model, output_estimate="predictor")
    done = WaitingRequest("d", 0.0, 100, 4096, workload_class="chat")
    for _ in range(32):
        q.on_finished(done, 20)
    assert q.job_size.predictor.predict_total(done) == pytest.approx(20, rel=0.01)  # prior shrunk away


def test_default_step_model_is_the_perf_model_preset():
    q = create_queue("sjf-aging")
    assert q.job_size.decode_token_s > 0


def test_cap_by_max_tokens_switch_reaches_the_default_predictor(linear_model):
    short_cap = WaitingRequest("s", 0.0, 100, 4, workload_class="chat")
    sizes = {}
    for cap in (True, False):
        q = _queue(linear_model, output_estimate="predictor", cap_by_max_tokens=cap)
        for _ in range(32):
            q.on_finished(WaitingRequest("d", 0.0, 100, 4096, workload_class="chat"), 300)
        sizes[cap] = q.job_size.remaining_output_tokens(short_cap)
    assert sizes[True] == 4 and sizes[False] == pytest.approx(300, rel=0.01)
    from request_sched.predictor import OutputLengthPredictor
    with pytest.raises(ValueError, match="cap_by_max_tokens"):
        _queue(linear_model, predictor=OutputLengthPredictor(), cap_by_max_tokens=False)
