"""Named default step models for GPU/model pairs, derived from cited public figures.

No GPU is available to this project, so the defaults are built from published numbers (collected
with sources in the project's notes; each figure used is cited where it enters below):

- Hardware, H100 SXM: HBM 3.35 TB/s, 989 dense BF16 TFLOPS (NVIDIA datasheet). Achieved on H100 per
  microsoft/vidur ``data/profiling/compute/h100/.../mlp.csv`` (derived): ~2.9-3.1 TB/s weight
  streaming at <= 128 tokens, 670-750 TFLOPS at 512-4096 tokens. We use the midpoints 3.0 TB/s and
  710 TFLOPS; their ratio gives the BF16 ridge (237 tokens; the vidur rows switch regime between
  256 and 512).
- Model shapes (Qwen3 Technical Report, Tables 1-2; the models' config.json):
  Qwen3-30B-A3B: 48 layers, hidden 2048, 128 experts top-8, expert FFN 768, attention 32 query /
  4 KV heads of dim 128; KV 96 KiB/token.
  Qwen3-235B-A22B: 94 layers, hidden 4096, 128 experts top-8, expert FFN 1536, attention 64 query /
  4 KV heads of dim 128; KV 188 KiB/token.
- Measured decode steps, vLLM BF16 (ml-energy/leaderboard, lm-arena-chat task; vLLM launched with
  ``--enable-expert-parallel``, ml-energy/benchmark ``configs/vllm/lm-arena-chat``): median ITL vs batch.
  Qwen3-30B-A3B, 1xH100: 8 -> 12.85 ms, 16 -> 17.55, 32 -> 22.57, 64 -> 28.94, 88 -> 32.07.
  Qwen3-30B-A3B, 2xH100 (EP2): 8 -> 9.36, 32 -> 15.39, 128 -> 27.42, 256 -> 34.58, 512 -> 47.39,
  1019 -> 74.82.
  Qwen3-235B-A22B, 8xH100 (EP8): 8 -> 20.24, 32 -> 34.71, 128 -> 46.64, 228 -> 55.48.
- Expert-parallel all-to-all, deepseek-ai/DeepEP ``docs/legacy.md`` normal kernels, EP8 intranode:
  153 / 158 GB/s dispatch / combine over NVLink; we use 155 GB/s per GPU. (Cross-check, same source,
  low-latency kernels at EP8, 128 tokens, hidden 7168, top-8: 77 + 114 us dispatch + combine, i.e.
  187 ns per token-expert copy and layer for 21.5 KB; scaled to a 16 KB BF16 copy of hidden 4096,
  142 ns; the 155 GB/s figure gives 106 ns, so the all-to-all term is on the cheap side.)

Coefficients that decode-only rows cannot identify (prefill compute, attention, KV reads,
all-to-all) are computed from hardware and shape (roofline: bytes / bandwidth, FLOPs / peak); the
overhead, per-sequence and distinct-expert coefficients are then fitted to the ITL rows with those
fixed (``per_token_s`` stays 0: below the ridge a token's weight reads are shared by the whole
batch and sit in the overhead; above it the compute terms take over). One assumption is not a cited figure: the mean KV context of a decoding sequence in the
lm-arena-chat rows, taken as 1,024 tokens (it only moves cost between ``per_sequence_s``
and ``kv_read_s``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from perf_model.batch import BatchShape, MoeFactors
from perf_model.fit import FitReport, StepSample, fit_step_model
from perf_model.structural import ModelStructure, StepCoefficients, StructuralStepModel

#: achieved H100 figures (vidur profiles, midpoints; see module docstring)
H100_ACHIEVED_BYTES_PER_S = 3.0e12
H100_ACHIEVED_FLOPS = 710e12
#: DeepEP EP8 intranode normal-kernel bandwidth per GPU, bytes/s (dispatch 153, combine 158 GB/s)
DEEPEP_NVLINK_BYTES_PER_S = 155e9
#: assumed mean KV context of a decoding sequence in the ml-energy chat rows (not a cited figure)
ASSUMED_CHAT_CONTEXT_TOKENS = 1024


@dataclass(frozen=True)
class MoeShape:
    """Shape of an MoE transformer (per the model's technical report / config)."""

    layers: int
    hidden: int
    experts: int
    top_k: int
    expert_ffn: int
    q_heads: int
    kv_heads: int
    head_dim: int
    bytes_per_param: int = 2  # BF16

    @property
    def dense_params(self) -> int:
        """Attention projection parameters over all layers (q, k, v, o), the non-expert GEMMs."""
        q_out = self.q_heads * self.head_dim
        kv_out = 2 * self.kv_heads * self.head_dim
        return self.layers * (self.hidden * (q_out + kv_out) + q_out * self.hidden)

    @property
    def active_expert_params(self) -> int:
        """Expert parameters one token uses over all layers (k experts x gate/up/down)."""
        return self.layers * self.top_k * 3 * self.hidden * self.expert_ffn

    @property
    def kv_bytes_per_token(self) -> int:
        return self.layers * 2 * self.kv_heads * self.head_dim * self.bytes_per_param

    @property
    def attention_flops_per_pair(self) -> int:
        """FLOPs of one query-key pair over all layers: QK^T and PV, 2 FLOPs per multiply-add."""
        return self.layers * 4 * self.q_heads * self.head_dim


QWEN3_30B_A3B = MoeShape(layers=48, hidden=2048, experts=128, top_k=8, expert_ffn=768,
                         q_heads=32, kv_heads=4, head_dim=128)
QWEN3_235B_A22B = MoeShape(layers=94, hidden=4096, experts=128, top_k=8, expert_ffn=1536,
                           q_heads=64, kv_heads=4, head_dim=128)

#: (batch size, median ITL ms), ml-energy/leaderboard, vLLM, Qwen3-30B-A3B BF16
QWEN3_30B_ITL_1XH100 = ((8, 12.85), (16, 17.55), (32, 22.57), (64, 28.94), (88, 32.07))
QWEN3_30B_ITL_2XH100_EP2 = ((8, 9.36), (32, 15.39), (128, 27.42), (256, 34.58), (512, 47.39),
                            (1019, 74.82))
#: (batch size, median ITL ms), same source, vLLM, Qwen3-235B-A22B BF16 on 8xH100 with expert parallelism
QWEN3_235B_ITL_8XH100_EP8 = ((8, 20.24), (32, 34.71), (128, 46.64), (228, 55.48))


def roofline_coefficients(shape: MoeShape, gpus: int, flops: float, bytes_per_s: float,
                          link_bytes_per_s: float) -> tuple[ModelStructure, StepCoefficients]:
    """Structure and hardware-derived coefficients of ``shape`` on ``gpus`` GPUs (data + expert parallel).

    Tokens spread over the GPUs, so per-token compute costs divide by ``gpus``. Ridges (tokens per
    step at which a GEMM turns compute-bound), with ``r = flops / bytes_per_s`` (BF16: 2 bytes and
    2 FLOPs per weight, so a GEMM streams its weights in the time of ``r`` tokens):

    - dense (attention projections, replicated on every GPU under data-parallel attention): each
      GPU computes ``T / gpus`` tokens against all weights, ridge ``r * gpus``;
    - experts (each on one GPU under expert parallelism): an expert's GEMM sees ``T * k / E``
      tokens from all GPUs, ridge ``r * E / k`` whatever ``gpus`` is (each GPU streams ``E / gpus``
      experts and computes ``T * k / gpus`` token-expert products, both divide by ``gpus``).

    All-to-all: each remote dispatch moves ``hidden`` values out and back (BF16 dispatch + combine)
    at every layer, the GPUs' links working in parallel.
    """
    ridge = flops / bytes_per_s
    structure = ModelStructure(num_experts=shape.experts, top_k=shape.top_k,
                               dense_ridge_tokens=ridge * gpus,
                               moe_ridge_tokens=ridge * shape.experts / shape.top_k,
                               reference_imbalance=1.0)
    coefficients = StepCoefficients(
        dense_compute_s=2 * shape.dense_params / flops / gpus,
        kv_read_s=shape.kv_bytes_per_token / bytes_per_s / gpus,
        attention_pair_s=shape.attention_flops_per_pair / flops / gpus,
        moe_compute_s=2 * shape.active_expert_params / flops / gpus,
        all_to_all_s=shape.layers * shape.hidden * 2 * shape.bytes_per_param / link_bytes_per_s / gpus,
    )
    return structure, coefficients


def itl_samples(rows: tuple[tuple[int, float], ...], context_tokens: int,
                moe: MoeFactors | None = None) -> list[StepSample]:
    """Decode-only steps from (batch, ITL ms) rows, each sequence reading ``context_tokens`` of KV."""
    return [StepSample(BatchShape(decode_seqs=b, kv_context_tokens=b * context_tokens), ms / 1e3, moe)
            for b, ms in rows]


@dataclass(frozen=True)
class Deployment:
    """A model on ``gpus`` H100s (data + expert parallel) with its public decode rows.

    Attributes:
        shape: the model's shape.
        gpus: GPUs of one engine (expert parallelism ``gpus``; 1 = no expert parallelism).
        itl_rows: (batch size, median ITL ms) measured on vLLM without EPLB.
    """

    shape: MoeShape
    gpus: int
    itl_rows: tuple[tuple[int, float], ...]

    def fit(self, name: str) -> FitReport:
        """Roofline coefficients fixed, ``overhead``, ``per_sequence`` and ``expert_load`` fitted to the rows."""
        structure, analytic = roofline_coefficients(self.shape, self.gpus, H100_ACHIEVED_FLOPS,
                                                    H100_ACHIEVED_BYTES_PER_S, DEEPEP_NVLINK_BYTES_PER_S)
        # With expert parallelism over G GPUs and the default (unaware) placement, (G-1)/G of the
        # token->expert dispatches are remote; the rows were measured with that traffic.
        moe = MoeFactors(imbalance=1.0, remote_fraction=(self.gpus - 1) / self.gpus) if self.gpus > 1 else None
        fixed = ("per_token_s", "dense_compute_s", "kv_read_s", "attention_pair_s", "moe_compute_s", "all_to_all_s")
        return fit_step_model(itl_samples(self.itl_rows, ASSUMED_CHAT_CONTEXT_TOKENS, moe), structure,
                              base=analytic, fixed=fixed, name=name)

    def expert_stream_floor_s(self) -> float:
        """Roofline floor of ``expert_load_s`` (seconds per distinct expert touched, over all layers).

        One expert's gate/up/down weights streamed from HBM at every layer, the ``gpus`` GPUs
        streaming their own experts in parallel: ``layers * 3 * hidden * expert_ffn * bytes /
        (bytes_per_s * gpus)``. A perfectly balanced placement still pays this; the fitted
        coefficient above it is what imbalance and kernel inefficiency add.
        """
        s = self.shape
        return s.layers * 3 * s.hidden * s.expert_ffn * s.bytes_per_param / (H100_ACHIEVED_BYTES_PER_S * self.gpus)


#: preset name -> the deployment it is derived from. The EP presets' rows were measured without
#: EPLB (vLLM's default expert order), so their fitted MoE terms hold the default placement's
#: imbalance: a comparison anchors ``reference_imbalance`` at that placement's imbalance
#: (``experiments.comparisons.placements.anchored_model``) and only a better-balanced placement
#: shortens a step.
DEPLOYMENTS: dict[str, Deployment] = {
    "qwen3-30b-a3b-h100": Deployment(QWEN3_30B_A3B, 1, QWEN3_30B_ITL_1XH100),
    "qwen3-30b-a3b-2xh100-ep2": Deployment(QWEN3_30B_A3B, 2, QWEN3_30B_ITL_2XH100_EP2),
    "qwen3-235b-a22b-8xh100-ep8": Deployment(QWEN3_235B_A22B, 8, QWEN3_235B_ITL_8XH100_EP8),
}


def fit_preset(name: str) -> FitReport:
    """Preset ``name`` fitted to its public rows (model, R^2, MAPE). Raises ValueError for an unknown name."""
    try:
        deployment = DEPLOYMENTS[name]
    except KeyError:
        raise ValueError(f"gpu model {name!r}: expected one of {', '.join(preset_names())}") from None
    return deployment.fit(name)


#: preset name -> derivation (returns the fit against its public rows, with R^2 and MAPE)
PRESETS: dict[str, Callable[[], FitReport]] = {name: partial(fit_preset, name) for name in DEPLOYMENTS}


def preset_names() -> list[str]:
    return sorted(DEPLOYMENTS)


def preset_model(name: str) -> StructuralStepModel:
    """The step model of preset ``name``. Raises ValueError for an unknown name."""
    return fit_preset(name).model
