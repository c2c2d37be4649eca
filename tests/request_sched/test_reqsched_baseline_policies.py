"""SGLang hrrn/lpm and vLLM sjf behave as their sources define, on small hand cases."""

import pytest

from request_sched.policies import create_queue
from request_sched.policies.lpm import in_batch_deprioritized
from request_sched.policies.vllm_sjf import vllm_sjf_score
from request_sched.types import WaitingRequest


def _req(rid, t=0.0, prompt=100, cached=0, blocks=()):
    return WaitingRequest(rid, t, prompt_tokens=prompt, max_new_tokens=10, cached_tokens=cached,
                          prefix_blocks=tuple(blocks))


def _ids(requests):
    return [r.request_id for r in requests]


def test_hrrn_orders_by_waited_prefill_tokens_over_uncached_length():
    q = create_queue("hrrn")
    q.add(_req("long", prompt=1000), 0.0)       # stamped at 0 processed tokens
    q.on_prefill(400)
    q.add(_req("short", prompt=100), 0.0)       # stamped at 400
    q.add(_req("warm", prompt=500, cached=500), 0.0)  # nothing to prefill: drains first
    q.on_prefill(100)
    # ratios: long 500/1000 = 0.5, short 100/100 = 1.0
    assert _ids(q.ordered(0.0)) == ["warm", "short", "long"]
    q.add(_req("late", prompt=10), 0.0)  # stamped at 500
    q.on_prefill(500)
    # long 1000/1000 = 1.0, short 600/100 = 6.0, late 500/10 = 50.0
    assert _ids(q.ordered(0.0)) == ["warm", "late", "short", "long"]


def test_hrrn_ties_go_to_the_smaller_request_id_and_readd_keeps_the_stamp():
    q = create_queue("hrrn")
    q.add(_req("b"), 0.0)
    q.add(_req("a"), 0.0)
    assert _ids(q.ordered(0.0)) == ["a", "b"]
    q.on_prefill(1000)
    q.add(_req("c", prompt=50), 0.0)  # waited 0 tokens
    popped = q.pop(0.0)
    assert popped.request_id == "a"
    q.add(popped, 0.0)  # not admitted: SGLang never took it out, its 1000 waited tokens remain
    assert _ids(q.ordered(0.0)) == ["a", "b", "c"]


def test_lpm_prefers_cached_tokens_and_defers_duplicate_prefixes():
    q = create_queue("lpm")
    q.add(_req("cold1", blocks=[7, 8]), 0.0)
    q.add(_req("cold2", blocks=[7, 9]), 0.0)   # same first block as cold1, uncached: deferred
    q.add(_req("hot", cached=600), 0.0)
    q.add(_req("cold3", blocks=[5]), 0.0)
    assert _ids(q.ordered(0.0)) == ["hot", "cold1", "cold3", "cold2"]


def test_in_batch_check_skips_requests_with_a_cache_hit_above_32_tokens():
    waiting = [_req("x", blocks=[1]), _req("y", cached=64, blocks=[1]), _req("z", blocks=[1])]
    assert in_batch_deprioritized(waiting) == {"z"}


@pytest.mark.parametrize("name, head_when_sorted", [("hrrn", "r100"), ("lpm", "r128")])
def test_cache_aware_policies_do_not_sort_above_128_waiting(name, head_when_sorted):
    q = create_queue(name)
    for i in range(129):  # prompt 100, i cached tokens: r100..r128 have nothing to prefill
        q.add(_req(f"r{i:03d}", cached=i), 0.0)
    q.on_prefill(1000)
    assert _ids(q.ordered(0.0))[:3] == ["r000", "r001", "r002"]  # unsorted list: arrival order
    q.pop(0.0)
    assert q.peek(0.0).request_id == "r001"  # the same pass: the list's order stands
    assert len(q) == 128 and q.peek(1.0).request_id == head_when_sorted  # next pass: sorted again


@pytest.mark.parametrize("name, next_pass", [("hrrn", ["b", "c"]), ("lpm", ["c", "b"])])
def test_one_sort_per_pass_taking_the_head_does_not_reorder_the_rest(name, next_pass):
    """SGLang sorts once per scheduling pass and the prefill adder walks that list. Here b shares
    a's prefix block, so the in-batch check puts b last while a waits; once a is taken, b stays
    behind c for the rest of the pass. The next pass sorts again: hrrn breaks the tie of b and c
    (nothing waited, nothing cached) by request id, lpm's stable sort keeps the list's order."""
    q = create_queue(name)
    q.add(_req("a", prompt=512, blocks=[7]), 0.0)
    q.add(_req("b", prompt=512, blocks=[7]), 0.0)
    q.add(_req("c", prompt=600), 0.0)
    first = _ids(q.ordered(0.0))
    assert first[-1] == "b" and first[0] == "a"
    q.pop(0.0)
    assert _ids(q.ordered(0.0)) == first[1:]  # same pass: no re-sort
    assert _ids(q.ordered(1.0)) == next_pass


def test_vllm_sjf_score_matches_the_sigmoid_definition():
    assert vllm_sjf_score(5.0, 32768) == pytest.approx(0.5)   # both sigmoids at their medians
    assert vllm_sjf_score(0.0, 0) == pytest.approx(0.5 / (1 + 2.718281828**1) + 0.5 / (1 + 2.718281828**-1))
    assert vllm_sjf_score(100.0, 100) > vllm_sjf_score(100.0, 60000)


def test_vllm_sjf_orders_simultaneous_arrivals_by_prompt_length():
    q = create_queue("vllm-sjf")
    for rid, prompt in [("a", 5000), ("b", 100), ("c", 900)]:
        q.add(_req(rid, prompt=prompt), 0.0)
    assert _ids(q.ordered(0.0)) == ["b", "c", "a"]


def test_vllm_sjf_heap_uses_stale_scores():
    """Scores cached at insertion decide the heap root: at t=3 request 0 (waited 3 s) has the
    highest score, yet vLLM's heap yields 1 first; sjf-aging's static key has no such error."""
    q = create_queue("vllm-sjf")
    for i, (t, prompt) in enumerate([(0.0, 1000), (1.0, 100), (2.0, 5000)]):
        q.add(_req(str(i), t=t, prompt=prompt), t)
    true_scores = {r: vllm_sjf_score(3.0 - t, p)
                   for r, (t, p) in zip("012", [(0.0, 1000), (1.0, 100), (2.0, 5000)])}
    assert max(true_scores, key=true_scores.get) == "0"
    assert q.pop(3.0).request_id == "1"
