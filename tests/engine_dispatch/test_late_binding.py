"""Late-binding hold queues (engine_dispatch.late_binding): hypothesis state machine over random
arrivals, releases, completions, withdrawals, engine failures, re-targets and moves (random ones and
the real SelectiveRebalancer's); config loading."""

import math

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from engine_dispatch.late_binding import HoldQueues, load_late_binding
from engine_dispatch.rebalance import Move, RebalanceConfig, SelectiveRebalancer
from engine_dispatch.types import EngineLoad
from perf_model.presets import preset_model
from request_sched.policies import create_queue

ENGINES = 3
MODEL = preset_model("qwen3-30b-a3b-h100")


class HoldMachine(RuleBasedStateMachine):
    """Shadow books: ``state[id]`` is ("held", e), ("sent", e) or ("gone", None)."""

    def __init__(self) -> None:
        super().__init__()
        self.q = HoldQueues(ENGINES, max_in_flight=1)
        self.healthy = [True] * ENGINES
        self.state: dict[str, tuple[str, int | None]] = {}
        self.sends: dict[str, int] = {}
        self.reported = [0] * ENGINES
        self.now = 0.0
        self.rebalancer = SelectiveRebalancer(RebalanceConfig(
            long_wait_s=0.0, cooldown_s=0.0, max_moves_per_s=1000.0, max_burst=4,
            overload_abs_s=0.0), MODEL)

    def _ids(self, kind: str) -> list[str]:
        return sorted(rid for rid, (k, _) in self.state.items() if k == kind)

    def _sent(self, rid: str, engine: int) -> None:
        assert self.healthy[engine] or self.state.get(rid) is None, "released to an unhealthy engine"
        self.sends[rid] = self.sends.get(rid, 0) + 1
        assert self.sends[rid] == 1, f"{rid} sent twice"
        self.state[rid] = ("sent", engine)

    @rule(engine=st.integers(0, ENGINES - 1), tokens=st.integers(0, 20000))
    def submit(self, engine, tokens):
        rid = f"r{len(self.state)}"
        if self.q.submit(rid, engine, tokens, self.now):
            self._sent(rid, engine)
        else:
            self.state[rid] = ("held", engine)

    @rule(data=st.data())
    def release(self, data):
        self.now += data.draw(st.floats(0.0, 0.5))
        for r in self.q.release(self.healthy, self.now):
            assert self.state[r.request_id] == ("held", r.engine_id)
            assert self.healthy[r.engine_id]
            assert self.q.occupied(r.engine_id) <= self.q.max_in_flight
            self._sent(r.request_id, r.engine_id)

    @rule(engine=st.integers(0, ENGINES - 1), requests=st.integers(0, 2))
    def report(self, engine, requests):
        """A report-driven host (SGLang's DP controller): the engine counts ``requests``."""
        self.q.report_occupancy(engine, requests)
        self.reported[engine] = requests

    @precondition(lambda self: self._ids("sent"))
    @rule(data=st.data())
    def finish(self, data):
        rid = data.draw(st.sampled_from(self._ids("sent")))
        self.q.finished(rid)
        self.q.finished(rid)  # a second completion report is harmless
        self.state[rid] = ("gone", None)

    @precondition(lambda self: self.state)
    @rule(data=st.data())
    def withdraw(self, data):
        rid = data.draw(st.sampled_from(sorted(self.state)))
        held = self.q.withdraw(rid)
        assert (held is not None) == (self.state[rid][0] == "held")
        if held is not None:
            self.state[rid] = ("gone", None)

    @rule(engine=st.integers(0, ENGINES - 1))
    def toggle_health(self, engine):
        self.healthy[engine] = not self.healthy[engine]

    @rule()
    def repick_stranded(self):
        alive = [e for e in range(ENGINES) if self.healthy[e]]
        for rid in self.q.stranded(self.healthy):
            assert not self.healthy[self.state[rid][1]]
            if alive:
                assert self.q.retarget(rid, alive[0], self.now)
                self.state[rid] = ("held", alive[0])

    @rule(data=st.data())
    def random_moves(self, data):
        """Arbitrary (often stale or invalid) moves: only valid ones to healthy engines apply."""
        ids = sorted(self.state) or ["none"]
        moves = data.draw(st.lists(st.builds(
            Move, st.sampled_from(ids), st.integers(0, ENGINES - 1), st.integers(0, ENGINES - 1),
            st.just(1.0), st.just(0.0)), max_size=4))
        for move in self.q.apply(moves, self.healthy, self.now):
            assert self.healthy[move.target]
            assert self.state[move.request_id] == ("held", move.source)
            self.state[move.request_id] = ("held", move.target)

    @rule(pending=st.lists(st.integers(0, 50000), min_size=ENGINES, max_size=ENGINES))
    def rebalance(self, pending):
        self.now += 0.2
        loads = [EngineLoad(e, running=self.q.in_flight(e), pending_prefill_tokens=p,
                            kv_capacity_tokens=100000, healthy=self.healthy[e], reported_s=self.now)
                 for e, p in enumerate(pending)]
        for move in self.q.rebalance(self.rebalancer, loads, self.now):
            assert self.healthy[move.target] and move.target != move.source
            assert self.state[move.request_id] == ("held", move.source)
            self.state[move.request_id] = ("held", move.target)

    @invariant()
    def books_match(self):
        for e in range(ENGINES):
            held = [h.request_id for h in self.q.held(e, self.now)]
            assert sorted(held) == sorted(r for r, s in self.state.items() if s == ("held", e))
            sent = [r for r, s in self.state.items() if s == ("sent", e)]
            assert self.q.in_flight(e) == len(sent) <= self.q.max_in_flight
            assert self.q.occupied(e) == len(sent) + self.reported[e]
        assert self.q.held_count() == len(self._ids("held"))

    def teardown(self):
        """Drain: with every engine healthy, every held request is sent exactly once."""
        self.healthy = [True] * ENGINES
        for e in range(ENGINES):
            self.q.report_occupancy(e, 0)
        while self._ids("held") or self._ids("sent"):
            for rid in self._ids("sent"):
                self.q.finished(rid)
                self.state[rid] = ("gone", None)
            for r in self.q.release(self.healthy, self.now):
                self._sent(r.request_id, r.engine_id)
        withdrawn = [rid for rid in self.state if rid not in self.sends]
        assert all(self.sends[rid] == 1 for rid in self.sends)
        assert self.q.held_count() == 0 and len(self.sends) + len(withdrawn) == len(self.state)


TestHoldQueues = HoldMachine.TestCase
TestHoldQueues.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


class PolicyOrderedHoldMachine(HoldMachine):
    """The same books with each hold queue ordered by sjf-aging (as SGLang's DP controller runs)."""

    def __init__(self) -> None:
        super().__init__()
        self.q = HoldQueues(ENGINES, max_in_flight=1,
                            make_queue=lambda: create_queue("sjf-aging", output_estimate="none", max_wait_s=1.0))


TestPolicyOrderedHoldQueues = PolicyOrderedHoldMachine.TestCase
TestPolicyOrderedHoldQueues.settings = settings(max_examples=80, stateful_step_count=40, deadline=None)


def test_submit_sends_at_once_only_with_room_and_empty_queue():
    q = HoldQueues(2, max_in_flight=1)
    assert q.submit("a", 0, 10, 0.0)
    assert not q.submit("b", 0, 10, 0.0)
    with pytest.raises(ValueError):
        q.submit("b", 1, 10, 0.0)
    q.finished("a")
    assert not q.submit("c", 0, 10, 1.0)  # "b" is ahead: FIFO per engine
    released = q.release([True, True], 2.0)
    assert [(r.request_id, r.engine_id, r.held_for_s) for r in released] == [("b", 0, 2.0)]
    assert q.held(0, 2.0)[0].request_id == "c"


def test_reported_requests_count_against_the_cap_until_the_report_drops():
    q = HoldQueues(1, max_in_flight=3)
    q.report_occupancy(0, 2)
    assert q.submit("a", 0, 10, 0.0)  # 2 reported + 0 in flight < 3
    assert not q.submit("b", 0, 10, 0.0)  # 2 + 1 = 3: full
    q.finished("a")  # the next report counts "a" ...
    q.report_occupancy(0, 3)  # ... among its 3
    assert q.release([True], 1.0) == [] and q.occupied(0) == 3
    q.report_occupancy(0, 1)  # two finished
    assert [r.request_id for r in q.release([True], 2.0)] == ["b"] and q.occupied(0) == 2


def test_policy_ordered_hold_queue_releases_short_prompts_first_and_moves_keep_their_hold_time():
    q = HoldQueues(2, max_in_flight=1, make_queue=lambda: create_queue("sjf-aging", output_estimate="none"))
    assert q.submit("running", 0, 10, 0.0)
    for rid, tokens, t in (("long", 8000, 1.0), ("short", 50, 2.0), ("mid", 900, 3.0)):
        q.submit(rid, 0, tokens, t)
    assert [h.request_id for h in q.held(0, 3.0)] == ["short", "mid", "long"]
    q.finished("running")
    assert [r.request_id for r in q.release([True, True], 4.0)] == ["short"]
    fifo = HoldQueues(2, max_in_flight=1)
    assert fifo.submit("busy0", 0, 10, 0.0) and fifo.submit("busy1", 1, 10, 0.0)  # both full
    for rid, engine, t in (("early", 0, 1.0), ("late", 1, 2.0)):
        assert not fifo.submit(rid, engine, 10, t)
    fifo.retarget("early", 1, 3.0)
    assert [h.request_id for h in fifo.held(1, 3.0)] == ["early", "late"]  # held before "late"


def test_held_requests_are_rebooked_once_a_report_would_cover_them():
    q = HoldQueues(2, max_in_flight=1)
    q.submit("sent", 0, 10, 1.0)
    q.submit("a", 0, 10, 2.0)
    q.submit("b", 0, 10, 4.0)
    q.submit("c", 1, 10, 1.0)  # sent: engine 1 had room
    assert [h.request_id for h in q.stale_bookings([3.0, 3.0], 5.0)] == ["a"]  # "b" booked after
    assert q.stale_bookings([3.0, 3.0], 6.0) == []  # "a" now booked at 5.0
    q.retarget("b", 1, 7.0)
    assert [h.request_id for h in q.stale_bookings([6.5, 6.5], 8.0)] == ["a"]  # "b" re-booked at 7.0


def test_the_booking_callback_follows_every_change_of_engine_or_booking_time():
    booked = []
    q = HoldQueues(2, max_in_flight=1, book=lambda rid, engine, now: booked.append((rid, engine, now)))
    q.submit("sent", 0, 10, 1.0)  # the host books first picks itself
    q.submit("a", 0, 10, 2.0)
    q.submit("b", 0, 10, 3.0)
    assert booked == []
    q.stale_bookings([2.5, 2.5], 4.0)  # "a" renewed
    q.retarget("b", 1, 5.0)  # on its new engine
    q.apply([Move("a", 0, 1, 9.0, 8.0)], [True, True], 6.0)  # an applied move, on its target
    q.apply([Move("a", 0, 1, 9.0, 8.0)], [True, True], 6.5)  # stale move (now on 1): dropped
    q.release([True, True], 7.0)  # engine 1's one slot: "a" (held first) goes, from its send time
    assert booked == [("a", 0, 4.0), ("b", 1, 5.0), ("a", 1, 6.0), ("a", 1, 7.0)]


def test_overloaded_hold_queue_is_rebalanced_to_the_idle_engine():
    q = HoldQueues(2, max_in_flight=1)
    for i in range(6):
        q.submit(f"r{i}", 0, 8000, 0.0)
    rebalancer = SelectiveRebalancer(RebalanceConfig(long_wait_s=0.0, max_burst=2), MODEL)
    loads = [EngineLoad(0, running=1, kv_capacity_tokens=10**6), EngineLoad(1, kv_capacity_tokens=10**6)]
    moves = q.rebalance(rebalancer, loads, 1.0)
    assert 1 <= len(moves) <= 2  # the move cap (max_burst) holds
    assert all(m.source == 0 and m.target == 1 and m.after_s < m.before_s for m in moves)
    assert [h.request_id for h in q.held(1, 1.0)] == [m.request_id for m in moves]
    loads[1].healthy = False
    assert q.rebalance(rebalancer, loads, 10.0) == []  # never onto an unhealthy engine


def test_config_file_and_errors(tmp_path):
    good = tmp_path / "lb.toml"
    good.write_text("[hold]\nmax_in_flight = 3\n[rebalance]\nmax_moves_per_s = 5\n")
    config = load_late_binding(good)
    assert config.hold.max_in_flight == 3 and config.rebalance.max_moves_per_s == 5.0
    assert math.isclose(load_late_binding(None).hold.tick_s, 0.02)
    for text, needle in (("[hold]\nmax_in_flight = 0\n", "hold.max_in_flight"),
                         ("[hold]\nbogus = 1\n", "hold.bogus"),
                         ("[extra]\n", "extra"), ("[rebalance]\nmax_burst = 0\n", "max_burst"),
                         ("[hold\n", "not valid TOML")):
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ValueError, match=needle) as info:
            load_late_binding(bad)
        assert str(bad) in str(info.value)
