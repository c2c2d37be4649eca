"""The SLO token budget in the simulated SGLang engine: it splits prefill when small chunks are
cheap for the decodes, and leaves the step's limit when every prefilling step breaks the SLO."""

import numpy as np

from experiments.sim.results import token_times
from experiments.workloads.types import TraceRequest
from perf_model.structural import ModelStructure, StepCoefficients, StructuralStepModel
from request_sched.token_budget import SloTokenBudget

#: 8 requests that keep decoding, then 4 long prompts arriving while they do
DECODING = [TraceRequest(f"d{i}", 0.001 * i, 32, 400) for i in range(8)]
PROMPTS = [TraceRequest(f"p{i}", 0.5 + 0.01 * i, 1500, 4) for i in range(4)]


def _cpu_like(prefill_step_s: float, per_token_s: float) -> StructuralStepModel:
    """Decode-only steps ~8 ms at 8 sequences; ``prefill_step_s`` more for any step that prefills."""
    return StructuralStepModel(ModelStructure(), StepCoefficients(
        overhead_s=0.005, prefill_step_s=prefill_step_s, per_token_s=per_token_s, per_sequence_s=3e-4))


def _prompt_ttft_and_worst_gap(run_sim, model, budget) -> tuple[float, float]:
    """Mean TTFT of the late prompts and the longest inter-token gap of the decoding requests (s)."""
    result = run_sim(DECODING + PROMPTS, model, policy="fcfs", prefill_order="policy", mixed_chunk=True,
                     max_batched_tokens=2048, budget=budget)
    engine = result.engines[0]
    times = {r.trace.request_id: token_times(r, engine) for r in result.requests}
    ttft = np.mean([times[p.request_id][0] - p.arrival_s for p in PROMPTS])
    worst_gap = max(np.diff(times[d.request_id]).max() for d in DECODING)
    return float(ttft), float(worst_gap)


def test_a_fixed_cost_per_prefilling_step_above_the_slo_is_not_split(run_sim):
    model = _cpu_like(prefill_step_s=0.077, per_token_s=2e-5)
    budget = SloTokenBudget(model, tpot_slo_s=0.03, max_budget=65536, min_budget=64)
    ttft_budget, _ = _prompt_ttft_and_worst_gap(run_sim, model, budget)
    ttft_free, _ = _prompt_ttft_and_worst_gap(run_sim, model, None)
    assert ttft_budget <= 1.05 * ttft_free  # the same few big chunks, not ~24 chunks of 64 tokens


def test_cheap_small_chunks_are_split_to_keep_the_slo(run_sim):
    model = _cpu_like(prefill_step_s=0.0, per_token_s=1e-4)  # a 2,048-token chunk: ~0.21 s
    budget = SloTokenBudget(model, tpot_slo_s=0.03, max_budget=65536, min_budget=64)
    ttft_budget, worst_gap_budget = _prompt_ttft_and_worst_gap(run_sim, model, budget)
    ttft_free, worst_gap_free = _prompt_ttft_and_worst_gap(run_sim, model, None)
    assert worst_gap_budget <= 0.031 < worst_gap_free
    assert ttft_budget > ttft_free
