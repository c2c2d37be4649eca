import json

import numpy as np
import pytest

from expert_sched.stats import load_stats, stats_from_topk_ids

OLMOE = "data/routing/olmoe_routing_counts.npz"


def test_bundled_olmoe_domain():
    stats = load_stats(OLMOE, "arxiv")
    assert stats.load.shape == (3, 64) and stats.transitions.shape == (2, 64, 64)
    assert stats.transitions[0].sum() == 208896


def test_bundled_needs_known_domain():
    with pytest.raises(ValueError, match="--domain"):
        load_stats(OLMOE)
    with pytest.raises(ValueError, match="unknown domain 'wiki'"):
        load_stats(OLMOE, "wiki")


def test_json_with_steps_and_transitions(tmp_path):
    counts = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"logical_count": counts.tolist(), "transitions": np.ones((2, 4, 4)).tolist()}))
    stats = load_stats(path)
    np.testing.assert_array_equal(stats.load, counts.sum(0))
    assert stats.coactivation is None


@pytest.mark.parametrize("field,value,message", [
    ("logical_count", [[1, -1]], "negative"),
    ("logical_count", [[1, float("nan")]], "NaN"),
    ("transitions", np.ones((2, 2, 2)).tolist(), r"shape \[2, 2, 2\], expected \[0, 2, 2\]"),
])
def test_bad_counts_name_file_and_field(tmp_path, field, value, message):
    data = {"logical_count": [[1, 2]], field: value}
    path = tmp_path / "bad.npz"
    np.savez(path, **{k: np.asarray(v, dtype=float) for k, v in data.items()})
    with pytest.raises(ValueError, match=message) as info:
        load_stats(path)
    assert "bad.npz" in str(info.value) and field in str(info.value)


def test_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match="unknown stats format"):
        load_stats(tmp_path / "x.csv")


def test_topk_ids_brute_force():
    rng = np.random.default_rng(0)
    num_experts = 5
    ids = np.stack([np.stack([rng.permutation(num_experts)[:3] for _ in range(40)]) for _ in range(3)])
    stats = stats_from_topk_ids(ids, num_experts)
    load = np.zeros((3, num_experts))
    trans = np.zeros((2, num_experts, num_experts))
    coact = np.zeros((3, num_experts, num_experts))
    for l in range(3):
        for t in range(40):
            for a in ids[l, t]:
                load[l, a] += 1
                for b in ids[l, t]:
                    if a != b:
                        coact[l, a, b] += 1
            if l < 2:
                trans[l, ids[l, t, 0], ids[l + 1, t, 0]] += 1
    np.testing.assert_array_equal(stats.load, load)
    np.testing.assert_array_equal(stats.transitions, trans)
    np.testing.assert_array_equal(stats.coactivation, coact)
