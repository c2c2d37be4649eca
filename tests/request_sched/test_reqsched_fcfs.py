"""FCFS: arrival order, priority option, removal, factory errors."""

import pytest

from request_sched.policies import create_queue
from request_sched.types import WaitingRequest


def _req(rid: str, t: float, prio: int = 0) -> WaitingRequest:
    return WaitingRequest(request_id=rid, enqueue_s=t, prompt_tokens=10, max_new_tokens=10,
                          priority=prio)


def test_fcfs_orders_by_arrival_and_removes():
    q = create_queue("fcfs")
    for rid, t in [("a", 3.0), ("b", 1.0), ("c", 2.0)]:
        q.add(_req(rid, t), now=3.0)
    assert [r.request_id for r in q.ordered(3.0)] == ["b", "c", "a"]
    q.remove(_req("c", 2.0))
    assert q.peek(3.0).request_id == "b"
    assert [q.pop(3.0).request_id for _ in range(2)] == ["b", "a"]
    assert len(q) == 0
    with pytest.raises(IndexError):
        q.pop(3.0)


def test_fcfs_priority_first_then_arrival():
    q = create_queue("fcfs", use_priority=True)
    for rid, t, p in [("a", 1.0, 0), ("b", 2.0, 5), ("c", 3.0, 5)]:
        q.add(_req(rid, t, p), now=3.0)
    assert [r.request_id for r in q.ordered(3.0)] == ["b", "c", "a"]


def test_duplicate_add_and_unknown_policy_are_rejected():
    q = create_queue("fcfs")
    q.add(_req("a", 1.0), now=1.0)
    with pytest.raises(ValueError, match="already waiting"):
        q.add(_req("a", 1.0), now=1.0)
    with pytest.raises(ValueError, match="unknown request policy"):
        create_queue("nope")
    with pytest.raises(ValueError, match="bad options"):
        create_queue("fcfs", bogus=1)
