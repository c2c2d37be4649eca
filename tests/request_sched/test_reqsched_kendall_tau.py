"""The O(n log n) Kendall tau-b of the predictor benchmark equals the O(n^2) definition."""

import itertools
import math

from hypothesis import given, settings, strategies as st

from experiments.benchmarks.predictor_accuracy import kendall_tau_b


def _brute_tau_b(x, y):
    pairs = list(itertools.combinations(range(len(x)), 2))
    s = sum(((x[i] > x[j]) - (x[i] < x[j])) * ((y[i] > y[j]) - (y[i] < y[j])) for i, j in pairs)
    tx = sum(x[i] == x[j] for i, j in pairs)
    ty = sum(y[i] == y[j] for i, j in pairs)
    denom = math.sqrt((len(pairs) - tx) * (len(pairs) - ty))
    return s / denom if denom else math.nan


@settings(deadline=None)  # timing varies on a shared machine
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=2, max_size=40))
def test_fast_tau_b_matches_the_definition(points):
    x = [p[0] for p in points]
    y = [p[1] for p in points]
    fast, slow = kendall_tau_b(x, y), _brute_tau_b(x, y)
    assert (math.isnan(fast) and math.isnan(slow)) or math.isclose(fast, slow, abs_tol=1e-12)


def test_perfect_and_reversed_order():
    assert kendall_tau_b([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau_b([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
