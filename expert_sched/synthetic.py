"""Synthetic routing at scales with no public per-token data (e.g. DeepSeek-V3: 58 layers x 256).

Generative model (a latent-topic router):

- every layer l has expert popularity ``p[l] = softmax(skew_sigma * N(0, 1)^E)`` (log-normal skew);
- there are ``num_topics`` topics; topic z prefers experts ``A[l, z] ~ N(0, 1)^E`` at layer l;
- a token draws a topic at layer 0 and keeps it at each next layer with probability
  ``topic_persistence`` (else redraws it uniformly);
- at layer l it selects the top-k experts of ``log p[l] + affinity_beta * A[l, z] + Gumbel noise``
  (sampling k experts without replacement from ``softmax(log p + beta * A)``), best first.

Two parameters are fitted to the bundled OLMoE routing data (``fit_to_reference``), at the target
shape (E, k), on statistics that do not grow with E:

- load skew: coefficient of variation (std / mean over experts) of per-layer top-k loads;
- inter-layer affinity: normalised mutual information ``I(A; B) / sqrt(H(A) H(B))`` between a
  token's top-1 expert at consecutive recorded layers (from ``<domain>__cross_top1``).

``num_topics`` (64) and ``topic_persistence`` (0.9) are assumptions, not fitted: the reference has
only three recorded layers. Fitted values: docs/expert_sched.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .stats import RoutingStats, stats_from_topk_ids

REFERENCE = Path(__file__).resolve().parent.parent / "data" / "routing" / "olmoe_routing_counts.npz"


@dataclass(frozen=True)
class RouterModel:
    """Parameters of the latent-topic router (see module docstring)."""

    num_layers: int
    num_experts: int
    top_k: int
    skew_sigma: float
    affinity_beta: float
    num_topics: int = 64
    topic_persistence: float = 0.9


def sample_topk(model: RouterModel, num_tokens: int, seed: int = 0) -> np.ndarray:
    """[L, T, k] logical top-k ids of ``num_tokens`` tokens, best first."""
    rng = np.random.default_rng(seed)
    shape = (model.num_layers, model.num_experts)
    log_pop = model.skew_sigma * rng.standard_normal(shape)
    log_pop -= np.log(np.exp(log_pop).sum(1, keepdims=True))
    prefs = rng.standard_normal((model.num_layers, model.num_topics, model.num_experts))
    topic = rng.integers(model.num_topics, size=num_tokens)
    out = np.empty((model.num_layers, num_tokens, model.top_k), dtype=np.int32)
    for layer in range(model.num_layers):
        if layer:
            redraw = rng.random(num_tokens) >= model.topic_persistence
            topic = np.where(redraw, rng.integers(model.num_topics, size=num_tokens), topic)
        scores = log_pop[layer] + model.affinity_beta * prefs[layer, topic] + rng.gumbel(size=(num_tokens, model.num_experts))
        top = np.argpartition(-scores, model.top_k - 1, axis=1)[:, :model.top_k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        out[layer] = np.take_along_axis(top, order, axis=1)
    return out


def load_cv(load: np.ndarray) -> float:
    """Mean over layers of std/mean of per-expert load [L, E]."""
    return float(np.mean(load.std(1) / load.mean(1)))


def transition_nmi(transitions: np.ndarray) -> float:
    """Mean over layer pairs of ``I(A; B) / sqrt(H(A) H(B))`` of top-1 transition counts [L-1, E, E]."""
    values = []
    for counts in transitions:
        joint = counts / counts.sum()
        pa, pb = joint.sum(1), joint.sum(0)
        nz = joint > 0
        mutual = float((joint[nz] * np.log(joint[nz] / np.outer(pa, pb)[nz])).sum())
        entropy = lambda p: float(-(p[p > 0] * np.log(p[p > 0])).sum())  # noqa: E731
        values.append(mutual / np.sqrt(entropy(pa) * entropy(pb)))
    return float(np.mean(values))


def reference_targets(path: Path = REFERENCE) -> dict[str, float]:
    """Load-skew CV and top-1 transition NMI of the bundled OLMoE data, averaged over domains."""
    with np.load(path) as data:
        domains = sorted({k.split("__")[0] for k in data.files if k.endswith("__counts_topk")})
        cv = [load_cv(data[f"{d}__counts_topk"].astype(float)) for d in domains]
        nmi = [transition_nmi(data[f"{d}__cross_top1"].astype(float)) for d in domains]
    return {"load_cv": float(np.mean(cv)), "transition_nmi": float(np.mean(nmi))}


def _sample_stats(model: RouterModel, num_tokens: int, seed: int) -> dict[str, float]:
    stats = stats_from_topk_ids(sample_topk(model, num_tokens, seed), model.num_experts, keep_tokens=False)
    return {"load_cv": load_cv(stats.load), "transition_nmi": transition_nmi(stats.transitions)}


def _bisect(lo: float, hi: float, value, target: float, steps: int) -> float:
    """Root of the increasing function ``value(x) = target`` on [lo, hi] by bisection."""
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if value(mid) < target else (lo, mid)
    return (lo + hi) / 2


def fit_to_reference(num_experts: int, top_k: int, targets: dict[str, float] | None = None,
                     num_tokens: int = 32768, seed: int = 0, rounds: int = 2,
                     steps: int = 6) -> tuple[RouterModel, dict[str, float]]:
    """Fit ``skew_sigma`` (to the load CV) and ``affinity_beta`` (to the transition NMI) at shape
    (E, k) by alternating bisections on 2-layer samples of ``num_tokens`` tokens.

    Both statistics increase with their parameter. The plug-in NMI is biased upwards when tokens
    are few relative to the E^2 cells, so a fit on a small sample at large E under-states the
    affinity (conservative for co-location claims). Returns the fitted model (2 layers; use
    ``dataclasses.replace`` for more) and the statistics it achieves.
    """
    targets = targets or reference_targets()
    sigma, beta = 1.0, 2.0
    for _ in range(rounds):
        sigma = _bisect(0.1, 4.0, lambda x: _sample_stats(
            RouterModel(2, num_experts, top_k, x, beta), num_tokens, seed)["load_cv"], targets["load_cv"], steps)
        beta = _bisect(0.0, 6.0, lambda x: _sample_stats(
            RouterModel(2, num_experts, top_k, sigma, x), num_tokens, seed)["transition_nmi"],
            targets["transition_nmi"], steps)
    model = RouterModel(2, num_experts, top_k, sigma, beta)
    return model, _sample_stats(model, num_tokens, seed)


def synthetic_stats(model: RouterModel, num_tokens: int = 8192, seed: int = 0) -> RoutingStats:
    """Routing statistics (with the token sample) drawn from ``model``."""
    ids = sample_topk(model, num_tokens, seed)
    return stats_from_topk_ids(ids, model.num_experts, source=f"synthetic{model}")
