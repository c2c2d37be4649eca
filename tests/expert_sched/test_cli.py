import json

import numpy as np
import pytest

from experiments.cli import main

OLMOE = "data/routing/olmoe_routing_counts.npz"


def test_place_writes_sglang_file_and_report(tmp_path, capsys):
    out, report = tmp_path / "placement.json", tmp_path / "report.json"
    code = main(["place", "--stats", OLMOE, "--domain", "book", "--num-gpus", "8", "--num-redundant", "8",
                 "--time-limit", "1", "--out", str(out), "--report", str(report)])
    assert code == 0
    data = json.loads(out.read_text())
    assert list(data) == ["physical_to_logical_map"]
    phy2log = np.asarray(data["physical_to_logical_map"])
    assert phy2log.shape == (3, 72)
    assert all(set(row) == set(range(64)) for row in phy2log.tolist())
    rep = json.loads(report.read_text())
    assert {"solution", "eplb", "solve_seconds", "bound", "gap", "start"} <= set(rep)
    assert "colocation" in capsys.readouterr().out


def test_migration_mode_round_trip(tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    base = ["place", "--stats", OLMOE, "--domain", "c4", "--num-gpus", "8", "--num-redundant", "0",
            "--time-limit", "1"]
    assert main(base + ["--out", str(first)]) == 0
    assert main(base + ["--domain", "arxiv", "--current", str(first), "--max-moves", "2", "--out", str(second)]) == 0
    old = np.asarray(json.loads(first.read_text())["physical_to_logical_map"]).reshape(3, 8, 8)
    new = np.asarray(json.loads(second.read_text())["physical_to_logical_map"]).reshape(3, 8, 8)
    for layer in range(3):
        for gpu in range(8):
            assert len(set(new[layer, gpu]) - set(old[layer, gpu])) <= 2


@pytest.mark.parametrize("extra,message", [
    (["--num-gpus", "7", "--num-redundant", "8"], "not divisible by --num-gpus 7"),
    (["--num-gpus", "8", "--num-redundant", "0", "--domain", "nope"], "unknown domain"),
    (["--num-gpus", "8", "--num-redundant", "0", "--objective", "fanout"], "needs 'coactivation'"),
    (["--num-gpus", "8", "--num-redundant", "0", "--deterministic-time", "0"], "--deterministic-time must be > 0"),
])
def test_impossible_input_is_one_line_exit_2(tmp_path, capsys, extra, message):
    out = tmp_path / "p.json"
    args = ["place", "--stats", OLMOE, "--time-limit", "1", "--out", str(out)] + extra
    if "--domain" not in extra:
        args += ["--domain", "c4"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not out.exists()


def test_negative_counts_exit_2(tmp_path, capsys):
    stats = tmp_path / "s.json"
    stats.write_text(json.dumps({"logical_count": [[1, -2], [3, 4]], "transitions": [[[1, 0], [0, 1]]]}))
    out = tmp_path / "p.json"
    assert main(["place", "--stats", str(stats), "--num-gpus", "2", "--num-redundant", "0",
                 "--out", str(out)]) == 2
    assert "negative" in capsys.readouterr().err
    assert not out.exists()


def test_fanout_objective_deterministic_runs_are_identical(tmp_path):
    from expert_sched.stats import stats_from_topk_ids

    rng = np.random.default_rng(4)
    stats = stats_from_topk_ids(np.stack([np.stack([rng.permutation(8)[:2] for _ in range(50)]) for _ in range(3)]), 8)
    path = tmp_path / "stats.json"
    path.write_text(json.dumps({"logical_count": stats.load.tolist(), "transitions": stats.transitions.tolist(),
                                "coactivation": stats.coactivation.tolist()}))
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    for out in outs:
        assert main(["place", "--stats", str(path), "--num-gpus", "4", "--num-redundant", "4", "--objective", "both",
                     "--deterministic-time", "0.2", "--out", str(out), "--report", str(out) + ".report"]) == 0
    assert outs[0].read_text() == outs[1].read_text()
    report = json.loads((tmp_path / "a.json.report").read_text())
    assert report["objective_kind"] == "both" and report["solution"]["pair_colocation"] is not None
