"""The structural step-latency model: roofline terms with saturation, linear in its coefficients.

One engine step of ``T = prefill_tokens + decode_seqs`` tokens takes (seconds)

    step = overhead
         + prefill_step    * [prefill_tokens > 0]            a step that prefills takes another path
         + per_token       * T                               activations, norms, per-token kernels
         + per_sequence    * decode_seqs                     sampling, per-sequence bookkeeping
         + dense_compute   * max(0, T - dense_ridge)         dense GEMMs once compute-bound
         + kv_read         * kv_context_tokens               attention reads the KV cache
         + attention_pair  * prefill_attention_pairs         causal prefill attention FLOPs
         + s * expert_load * D(T)                            touched experts' weights are streamed
         + s * moe_compute * max(0, T - moe_ridge)           experts once compute-bound
         + all_to_all      * T * k * remote_fraction         expert-parallel dispatch + combine

with ``D(T) = E * (1 - (1 - k/E)^T)`` (:mod:`perf_model.experts`) and ``s = imbalance /
reference_imbalance`` from :class:`~perf_model.batch.MoeFactors`: the MoE part of a layer waits for
the most loaded GPU, so a placement with a lower max/mean load or fewer cross-GPU dispatches gives a
shorter step.

``prefill_step`` is the fixed extra cost of a step that computes any prefill: GPU engines replay
decode-only steps from CUDA graphs but launch extend/mixed steps kernel by kernel, and SGLang's CPU
backend measured ~88 ms for a step that prefills beside decodes however small the chunk, against
~11 ms for the decode-only step (docs/request_sched.md, ``budget_real``).

Each GEMM costs ``max(weight_bytes / bandwidth, flops / peak)``, which equals ``weight_bytes /
bandwidth + (flops_per_token / peak) * max(0, T - ridge)`` with ``ridge = (weight_bytes / bandwidth)
/ (flops_per_token / peak)``; the weight-streaming constant folds into ``overhead``. The ridges and
(E, k) are the fixed structure (:class:`ModelStructure`); the ten coefficients
(:class:`StepCoefficients`) enter linearly, so :mod:`perf_model.fit` fits them by non-negative least
squares. Prediction is plain float arithmetic (a few hundred nanoseconds) because the simulator
calls it once per engine step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from perf_model.batch import BatchShape, MoeFactors
from perf_model.experts import distinct_experts


@dataclass(frozen=True)
class ModelStructure:
    """Fixed (not fitted) structure of a model on its hardware.

    Attributes:
        num_experts: routed experts per MoE layer, E (0 for a dense model: no MoE terms).
        top_k: experts per token, k.
        dense_ridge_tokens: tokens per step at which the dense GEMMs turn compute-bound
            (achieved FLOP/s / achieved bytes/s for BF16 weights; ``inf`` = never).
        moe_ridge_tokens: tokens per step at which the expert GEMMs turn compute-bound
            (dense ridge * E / k with balanced routing; ``inf`` = never).
        reference_imbalance: the expert-load max/mean at which the coefficients were measured;
            the MoE terms scale with ``imbalance / reference_imbalance``.
    """

    num_experts: int = 0
    top_k: int = 0
    dense_ridge_tokens: float = math.inf
    moe_ridge_tokens: float = math.inf
    reference_imbalance: float = 1.0

    def __post_init__(self) -> None:
        if self.num_experts < 0 or self.top_k < 0 or self.top_k > max(self.num_experts, 0):
            raise ValueError(f"structure: need 0 <= top_k <= num_experts, got E={self.num_experts} "
                             f"k={self.top_k}")
        if self.num_experts > 0 and self.top_k == 0:
            raise ValueError("structure: top_k must be >= 1 for an MoE model")
        if self.dense_ridge_tokens < 0 or self.moe_ridge_tokens < 0:
            raise ValueError("structure: ridge tokens must be >= 0")
        if self.reference_imbalance < 1.0:
            raise ValueError(f"structure: reference_imbalance must be >= 1, got {self.reference_imbalance}")


@dataclass(frozen=True)
class StepCoefficients:
    """Fitted coefficients of the step model, all >= 0 (units: seconds per unit of the feature).

    Attributes:
        overhead_s: fixed per-step cost (scheduling, launches, weight streaming below the ridge).
        prefill_step_s: fixed extra cost of a step with any prefill tokens (kernel path, no graph).
        per_token_s: per token in the step.
        per_sequence_s: per decoding sequence.
        dense_compute_s: per token beyond ``dense_ridge_tokens``.
        kv_read_s: per KV-cache token read by attention.
        attention_pair_s: per causal query-key pair of prefill attention.
        expert_load_s: per distinct expert touched (summed over all MoE layers).
        moe_compute_s: per token beyond ``moe_ridge_tokens``.
        all_to_all_s: per token->expert dispatch that crosses GPUs (dispatch + combine).
    """

    overhead_s: float = 0.0
    prefill_step_s: float = 0.0
    per_token_s: float = 0.0
    per_sequence_s: float = 0.0
    dense_compute_s: float = 0.0
    kv_read_s: float = 0.0
    attention_pair_s: float = 0.0
    expert_load_s: float = 0.0
    moe_compute_s: float = 0.0
    all_to_all_s: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"coefficients: {f.name} must be finite and >= 0, got {value}")


#: coefficient names in feature-column order (see :func:`step_features`).
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in fields(StepCoefficients))


def step_features(batch: BatchShape, moe: MoeFactors | None,
                  structure: ModelStructure) -> tuple[float, ...]:
    """The ten feature values of one step, in :data:`FEATURE_NAMES` order (step = coeffs . features)."""
    tokens = batch.prefill_tokens + batch.decode_seqs
    scale = 1.0 if moe is None else moe.imbalance / structure.reference_imbalance
    remote = 0.0 if moe is None else moe.remote_fraction
    return (
        1.0,
        1.0 if batch.prefill_tokens > 0 else 0.0,
        float(tokens),
        float(batch.decode_seqs),
        max(0.0, tokens - structure.dense_ridge_tokens),
        float(batch.kv_context_tokens),
        float(batch.attention_pairs),
        scale * distinct_experts(tokens, structure.num_experts, structure.top_k),
        scale * max(0.0, tokens - structure.moe_ridge_tokens),
        float(tokens * structure.top_k * remote),
    )


class StructuralStepModel:
    """A :class:`~perf_model.batch.StepTimeModel`: coefficients . features(batch, moe).

    Args:
        structure: fixed structure (experts, ridges).
        coefficients: fitted or preset coefficients.
        name: label written into coefficient files (e.g. the preset name).
    """

    def __init__(self, structure: ModelStructure, coefficients: StepCoefficients,
                 name: str = "") -> None:
        self.structure = structure
        self.coefficients = coefficients
        self.name = name

    def step_seconds(self, batch: BatchShape, moe: MoeFactors | None = None) -> float:
        """Predicted latency of one step in seconds (> 0 when ``overhead_s`` > 0).

        Same value as ``coefficients . step_features(batch, moe)``, written out for speed.
        """
        c = self.coefficients
        st = self.structure
        tokens = batch.prefill_tokens + batch.decode_seqs
        seconds = (c.overhead_s + c.per_token_s * tokens + c.per_sequence_s * batch.decode_seqs
                   + c.kv_read_s * batch.kv_context_tokens + c.attention_pair_s * batch.attention_pairs)
        if batch.prefill_tokens > 0:
            seconds += c.prefill_step_s
        if tokens > st.dense_ridge_tokens:
            seconds += c.dense_compute_s * (tokens - st.dense_ridge_tokens)
        if st.num_experts:
            moe_part = c.expert_load_s * distinct_experts(tokens, st.num_experts, st.top_k)
            if tokens > st.moe_ridge_tokens:
                moe_part += c.moe_compute_s * (tokens - st.moe_ridge_tokens)
            if moe is not None:
                moe_part *= moe.imbalance / st.reference_imbalance
                seconds += c.all_to_all_s * tokens * st.top_k * moe.remote_fraction
            seconds += moe_part
        return seconds

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"name", "structure", "coefficients"}`` (``inf`` ridges as null)."""
        structure = {k: (None if isinstance(v, float) and math.isinf(v) else v)
                     for k, v in asdict(self.structure).items()}
        return {"name": self.name, "structure": structure, "coefficients": asdict(self.coefficients)}

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> StructuralStepModel:
        """Inverse of :meth:`to_dict`. Raises ValueError naming ``source`` and the bad field."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object with 'structure' and 'coefficients'")
        try:
            raw_structure = dict(data["structure"])
            raw_coeffs = dict(data["coefficients"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: expected objects 'structure' and 'coefficients' ({exc})") from None
        for key in ("dense_ridge_tokens", "moe_ridge_tokens"):
            if raw_structure.get(key, 0) is None:
                raw_structure[key] = math.inf
        try:
            structure = ModelStructure(**raw_structure)
            coefficients = StepCoefficients(**{k: float(v) for k, v in raw_coeffs.items()})
        except TypeError as exc:
            raise ValueError(f"{source}: unknown or missing field: {exc}") from None
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None
        return cls(structure, coefficients, name=str(data.get("name", "")))
