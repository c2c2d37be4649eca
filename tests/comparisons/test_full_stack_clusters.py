"""The full-stack clusters: anchoring at the trivial placement, the expert-streaming floor, the EP8
cluster's KV arithmetic (replicas charged to KV) and its quick run."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.comparisons import full_stack
from experiments.comparisons.placements import ExpertStreamFloor, anchored_model
from perf_model.batch import BatchShape, MoeFactors
from perf_model.experts import distinct_experts
from perf_model.presets import DEPLOYMENTS, QWEN3_235B_A22B, preset_model

EP8_MODEL = full_stack.CLUSTERS["ep8"].gpu_model
TRIVIAL_EP8 = MoeFactors(imbalance=1.66, remote_fraction=7 / 8)  # OLMoE arxiv, 8 GPUs (docs/simulator.md)


@pytest.mark.parametrize("cluster", sorted(full_stack.CLUSTERS))
def test_anchored_model_reproduces_the_preset_at_the_trivial_placement(cluster):
    spec = full_stack.CLUSTERS[cluster]
    preset = preset_model(spec.gpu_model)
    remote = (spec.ep_gpus - 1) / spec.ep_gpus
    anchored = anchored_model(preset, MoeFactors(1.4, remote))
    for batch, _ in DEPLOYMENTS[spec.gpu_model].itl_rows:
        shape = BatchShape(decode_seqs=batch, kv_context_tokens=batch * 1024)
        assert anchored.step_seconds(shape, MoeFactors(1.4, remote)) == pytest.approx(
            preset.step_seconds(shape, MoeFactors(1.0, remote)), rel=1e-12)
        assert anchored.step_seconds(shape, MoeFactors(1.0, remote)) < preset.step_seconds(shape, MoeFactors(1.0, remote))


batches = st.builds(BatchShape, st.integers(0, 8192), st.integers(0, 4096), st.integers(0, 1024),
                    st.integers(0, 1_000_000))


@settings(max_examples=150, deadline=None)
@given(batch=batches, a=st.floats(1.0, 3.0), b=st.floats(1.0, 3.0))
def test_stream_floor_bounds_the_placement_gain(batch, a, b):
    model = anchored_model(preset_model(EP8_MODEL), TRIVIAL_EP8)
    floor_s = DEPLOYMENTS[EP8_MODEL].expert_stream_floor_s()
    floored = ExpertStreamFloor(model, floor_s)
    low, high = sorted((a, b))
    at = lambda m, imbalance: m.step_seconds(batch, MoeFactors(imbalance, 7 / 8))  # noqa: E731
    assert at(floored, low) >= at(model, low) - 1e-15
    assert at(floored, low) <= at(floored, high) + 1e-15  # a better balance is never slower
    # at or above the anchor the fitted cost is above the floor: unchanged
    assert at(floored, max(high, TRIVIAL_EP8.imbalance)) == pytest.approx(at(model, max(high, TRIVIAL_EP8.imbalance)))
    # with the imbalance term gone entirely, exactly the floor's streaming remains
    experts = distinct_experts(batch.tokens, 128, 8)
    assert at(floored, 1e-12) == pytest.approx(at(model, 1e-12) + experts * floor_s, rel=1e-9, abs=1e-12)


def test_ep8_kv_capacity_follows_from_memory():
    per_gpu = 0.9 * 80e9 - 235e9 * 2 / 8 - 3e9  # 90% of HBM minus BF16 weights and activations
    budget_tokens = 8 * per_gpu / QWEN3_235B_A22B.kv_bytes_per_token
    capacity = full_stack.CLUSTERS["ep8"].engine.kv_capacity_tokens
    assert 0.98 * budget_tokens < capacity <= budget_tokens


def test_full_stack_ep8_quick_charges_replicas_to_kv(tmp_path):
    out = tmp_path / "fs8"
    code = full_stack.main(["--cluster", "ep8", "--quick", "--traces", "mooncake", "--requests", "120",
                            "--capacity-requests", "400", "--engines", "1", "--solve-time-s", "2",
                            "--num-redundant", "8", "--no-progress", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    comparison = summary["comparison"]
    assert comparison["cluster"] == "ep8" and comparison["ep_gpus"] == 8
    assert comparison["gpu_model"].startswith(EP8_MODEL)
    placements = comparison["placements"]
    assert placements["eplb"]["imbalance"] < placements["trivial"]["imbalance"]
    assert placements["trivial"]["remote_fraction"]["deepep-low-latency"] == pytest.approx(7 / 8)
    assert len(comparison["targets"]) == 3 * len(full_stack.TARGET_STACKS)
    # 8 replicas of a 94 x 37.7 MB expert displace 8 x 18,432 KV tokens, in the stacks that hold them only
    full = full_stack.CLUSTERS["ep8"].engine.kv_capacity_tokens
    kv = {run["label"].split("/", 1)[1]: run["config"]["kv_capacity_tokens"] for run in summary["runs"]}
    assert kv["vllm"] == kv["sglang-no-eplb"] == full
    assert kv["sglang"] == kv["moesched"] == kv["sglang+placement@affinity"] == full - 8 * 18_432


def test_too_many_replicas_are_refused(tmp_path, capsys):
    code = full_stack.main(["--cluster", "ep8", "--quick", "--traces", "mooncake", "--num-redundant", "64",
                            "--solve-time-s", "1", "--no-progress", "--out", str(tmp_path / "x")])
    assert code == 2 and "--num-redundant" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
