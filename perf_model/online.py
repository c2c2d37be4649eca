"""Online refit of the step-latency model from the engine's own step timings.

Two layers, as SynergySched keeps its model current (arXiv 2509.23384; our reading, see
docs/rebalance.md): slow parameters that give the model its *shape*, fast ones that track the
engine's *speed*.

- Fast (every observed step, O(1)): a scale ``s`` on the slow model, ``step = s * slow(batch)``,
  estimated by recursive least squares with exponential forgetting ``lam`` on the ratio
  ``measured / slow(batch)``. The RLS gain starts at the steady value ``1 - lam``; after a drift
  reset it restarts near 1/2, 1/3, ... (a running mean over the new regime) and settles back at
  ``1 - lam`` (memory ~ ``1 / (1 - lam)`` steps). The relative
  residual is clipped to ``+-residual_clip`` before it enters the update (a lone 10x outlier moves
  ``s`` by at most the clip times the gain) and ``s`` stays within ``scale_bounds``.
- Slow (every ``refit_every`` steps, over the last ``window`` steps): the ten roofline
  coefficients of :class:`~perf_model.structural.StructuralStepModel` are refit by non-negative
  least squares on relative errors (rows divided by the measured time), with a ridge prior that
  pulls each coefficient towards its current effective value ``s * c``: coefficients the window
  cannot identify (no prefill in a decode-only window, say) keep their value instead of dropping
  to 0. The fit uses the older 3/4 of the window; the candidate is accepted only if its MAPE on the
  newest 1/4 beats the current model's, and each coefficient is clipped to within
  ``coefficient_clip`` times its prior. On acceptance ``s`` folds into the coefficients (reset to
  1); otherwise the last good fit stays.
- Drift: a two-sided Page-Hinkley test on the signed relative error ``measured / predicted - 1``
  (clipped like the residual; tolerance ``ph_delta``, threshold ``ph_threshold``). On a detection
  the RLS gain is reset (the scale re-learns at full speed), the window drops the steps of the old
  regime and a slow refit follows as soon as ``min_refit_samples`` new steps have been seen. A
  detection fewer than ``min_refit_samples`` steps after the previous one keeps the window: a
  shape the model lacks (a cost it has no term for, paid by some kinds of step only) reads as a
  stream of drifts, and only the slow refit over a full window can learn it.

Error metric: :attr:`OnlineStepModel.mape` is the mean of ``|predicted - measured| / measured``
over the last ``error_window`` steps, each prediction made *before* its step was observed
(one-step-ahead, the error the schedulers actually suffer).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, fields

import numpy as np

from perf_model.batch import BatchShape, MoeFactors
from perf_model.fit import StepSample, feature_matrix, nnls
from perf_model.structural import FEATURE_NAMES, StepCoefficients, StructuralStepModel


@dataclass(frozen=True)
class OnlineRefitConfig:
    """Knobs of :class:`OnlineStepModel` (steps are observed engine steps).

    Attributes:
        forgetting: RLS forgetting factor ``lam`` of the fast scale, in (0, 1).
        scale_bounds: (min, max) of the fast scale.
        residual_clip: relative residual clipped to +- this before the fast update (> 0).
        window: steps kept for the slow refit (>= 8).
        refit_every: steps between slow refits (>= 1).
        min_refit_samples: steps the window needs before a slow refit (>= 8, <= window).
        prior_weight: ridge weight pulling the slow coefficients to their current values, relative
            to the data (each unit-norm feature column of the window has weight 1).
        coefficient_clip: a refit coefficient stays within [prior / clip, prior * clip] (> 1);
            coefficients whose prior is 0 stay at most ``clip`` times the prior step time spread
            over the feature's mean.
        accept_margin: a candidate must reach validation MAPE <= margin * current MAPE (<= 1).
        error_window: one-step-ahead errors averaged by :attr:`OnlineStepModel.mape` (>= 1).
        ph_delta: Page-Hinkley tolerance on the relative error (>= 0).
        ph_threshold: Page-Hinkley detection threshold (> 0).
    """

    forgetting: float = 0.95
    scale_bounds: tuple[float, float] = (0.2, 5.0)
    residual_clip: float = 1.0
    window: int = 512
    refit_every: int = 128
    min_refit_samples: int = 64
    prior_weight: float = 0.05
    coefficient_clip: float = 10.0
    accept_margin: float = 0.98
    error_window: int = 64
    ph_delta: float = 0.03
    ph_threshold: float = 1.5

    def __post_init__(self) -> None:
        low, high = self.scale_bounds
        checks = {
            "forgetting": 0 < self.forgetting < 1,
            "scale_bounds": 0 < low <= 1 <= high,
            "residual_clip": self.residual_clip > 0,
            "window": self.window >= 8,
            "refit_every": self.refit_every >= 1,
            "min_refit_samples": 8 <= self.min_refit_samples <= self.window,
            "prior_weight": self.prior_weight >= 0,
            "coefficient_clip": self.coefficient_clip > 1,
            "accept_margin": 0 < self.accept_margin <= 1,
            "error_window": self.error_window >= 1,
            "ph_delta": self.ph_delta >= 0,
            "ph_threshold": self.ph_threshold > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"online refit config: invalid {', '.join(bad)} "
                             f"(see OnlineRefitConfig for the allowed ranges)")


class PageHinkley:
    """Two-sided Page-Hinkley test for a shift in the mean of a stream.

    ``update(x)`` returns True when the cumulative deviation of ``x`` from its running mean, less
    ``delta`` per sample, rises (or falls) more than ``threshold`` above (below) its extreme; the
    test then restarts.
    """

    def __init__(self, delta: float, threshold: float) -> None:
        self.delta = delta
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        self._n = 0
        self._mean = 0.0
        self._up = self._up_min = 0.0
        self._down = self._down_max = 0.0

    def update(self, x: float) -> bool:
        self._n += 1
        self._mean += (x - self._mean) / self._n
        self._up += x - self._mean - self.delta
        self._down += x - self._mean + self.delta
        self._up_min = min(self._up_min, self._up)
        self._down_max = max(self._down_max, self._down)
        if self._up - self._up_min > self.threshold or self._down_max - self._down > self.threshold:
            self.reset()
            return True
        return False


class OnlineStepModel:
    """A :class:`~perf_model.batch.StepTimeModel` that keeps learning from observed steps.

    Args:
        base: the starting (preset or calibrated) model; its structure is kept.
        config: refit knobs.

    Attributes:
        slow: the current slow model (last accepted coefficients).
        scale: the current fast scale.
        observed: steps observed; ``rejected``: steps ignored (time not finite or <= 0).
        drifts: Page-Hinkley detections; ``refits_accepted`` / ``refits_rejected``: slow refits.
    """

    def __init__(self, base: StructuralStepModel, config: OnlineRefitConfig | None = None) -> None:
        self.config = config or OnlineRefitConfig()
        self.slow = base
        self.scale = 1.0
        self._gain_p = 1.0 - self.config.forgetting  # RLS covariance of the scale, at steady state
        self._window: deque[StepSample] = deque(maxlen=self.config.window)
        self._errors: deque[float] = deque(maxlen=self.config.error_window)
        self._drift = PageHinkley(self.config.ph_delta, self.config.ph_threshold)
        self._since_refit = 0
        self._since_drift = 0
        self.observed = 0
        self.rejected = 0
        self.drifts = 0
        self.refits_accepted = 0
        self.refits_rejected = 0

    # --- prediction -----------------------------------------------------------------------------
    def step_seconds(self, batch: BatchShape, moe: MoeFactors | None = None) -> float:
        """Predicted step latency (seconds): ``scale * slow.step_seconds(batch, moe)``."""
        return self.scale * self.slow.step_seconds(batch, moe)

    @property
    def mape(self) -> float:
        """Mean one-step-ahead |error| / measured over the last ``error_window`` steps (0 if none)."""
        return float(sum(self._errors) / len(self._errors)) if self._errors else 0.0

    def current_model(self) -> StructuralStepModel:
        """The effective model as a plain structural model (scale folded into the coefficients)."""
        return StructuralStepModel(self.slow.structure, _scaled(self.slow.coefficients, self.scale),
                                   name=self.slow.name)

    def metrics(self) -> dict[str, float]:
        """Counters and the current error, for logs and Prometheus gauges."""
        return {"mape": self.mape, "scale": self.scale, "observed": self.observed,
                "rejected": self.rejected, "drifts": self.drifts,
                "refits_accepted": self.refits_accepted, "refits_rejected": self.refits_rejected}

    # --- learning -------------------------------------------------------------------------------
    def observe(self, batch: BatchShape, seconds: float, moe: MoeFactors | None = None) -> None:
        """Learn from one measured step of ``batch`` that took ``seconds``.

        A non-finite or non-positive time is counted in :attr:`rejected` and otherwise ignored.
        """
        if not (math.isfinite(seconds) and seconds > 0):
            self.rejected += 1
            return
        self.observed += 1
        self._since_drift += 1
        slow = self.slow.step_seconds(batch, moe)
        predicted = self.scale * slow
        self._errors.append(float(abs(predicted - seconds) / seconds))
        clip = self.config.residual_clip
        if predicted > 0 and self._drift.update(max(-clip, min(clip, seconds / predicted - 1.0))):
            self._on_drift()
        if slow > 0:
            self._update_scale(seconds / slow)
        self._window.append(StepSample(batch, seconds, moe))
        self._since_refit += 1
        if self._since_refit >= self.config.refit_every and len(self._window) >= self.config.min_refit_samples:
            self._since_refit = 0
            self.refit()

    def _update_scale(self, ratio: float) -> None:
        """Scalar RLS with forgetting on ``ratio`` (regressor 1), clipped residual, bounded result."""
        cfg = self.config
        lam = cfg.forgetting
        gain = self._gain_p / (lam + self._gain_p)
        residual = max(-cfg.residual_clip, min(cfg.residual_clip, ratio / self.scale - 1.0)) * self.scale
        low, high = cfg.scale_bounds
        self.scale = float(max(low, min(high, self.scale + gain * residual)))
        self._gain_p = (1.0 - gain) * self._gain_p / lam

    def _on_drift(self) -> None:
        self.drifts += 1
        self._gain_p = 1.0  # restart the RLS: gain ~1/2, then ~1/3, ... down to 1 - lam
        if self._since_drift >= self.config.min_refit_samples:
            recent = list(self._window)[-8:]
            self._window.clear()
            self._window.extend(recent)
        self._since_drift = 0
        self._since_refit = max(self._since_refit, self.config.refit_every - self.config.min_refit_samples)

    def refit(self) -> bool:
        """Slow refit over the window (see the module docstring). Returns True if accepted."""
        samples = list(self._window)
        if len(samples) < self.config.min_refit_samples:
            return False
        split = (3 * len(samples)) // 4
        train, valid = samples[:split], samples[split:]
        prior = _scaled(self.slow.coefficients, self.scale)
        candidate = self._fit(train, prior)
        current = self.current_model()
        if candidate is not None and _mape(candidate, valid) <= self.config.accept_margin * _mape(current, valid):
            self.slow = candidate
            self.scale = 1.0
            self.refits_accepted += 1
            return True
        self.refits_rejected += 1
        return False

    def _fit(self, samples: list[StepSample], prior: StepCoefficients) -> StructuralStepModel | None:
        """Ridge-to-prior NNLS on relative errors; None when nothing is identifiable."""
        structure = self.slow.structure
        features = feature_matrix(samples, structure)
        measured = np.array([s.seconds for s in samples])
        rows = features / measured[:, None]  # relative-error rows: target 1
        prior_vec = np.array([getattr(prior, n) for n in FEATURE_NAMES])
        norms = np.linalg.norm(rows, axis=0)
        free = norms > 0
        if not free.any():
            return None
        fixed_part = rows[:, ~free] @ prior_vec[~free]
        a = rows[:, free] / norms[free]
        b = 1.0 - fixed_part
        ridge = math.sqrt(self.config.prior_weight)
        a = np.vstack([a, ridge * np.eye(int(free.sum()))])
        b = np.concatenate([b, ridge * prior_vec[free] * norms[free]])
        solution = nnls(a, b) / norms[free]
        values = prior_vec.copy()
        values[free] = solution
        # bounds: a coefficient moves at most coefficient_clip-fold from its prior
        clip = self.config.coefficient_clip
        mean_feature = features.mean(axis=0)
        mean_step = float(measured.mean())
        for i in np.flatnonzero(free):
            if prior_vec[i] > 0:
                values[i] = min(max(values[i], prior_vec[i] / clip), prior_vec[i] * clip)
            elif mean_feature[i] > 0:
                values[i] = min(values[i], clip * mean_step / mean_feature[i])
        coefficients = StepCoefficients(**{n: float(v) for n, v in zip(FEATURE_NAMES, values)})
        return StructuralStepModel(structure, coefficients, name=self.slow.name)


def _scaled(coefficients: StepCoefficients, factor: float) -> StepCoefficients:
    return StepCoefficients(**{f.name: getattr(coefficients, f.name) * factor for f in fields(coefficients)})


def _mape(model: StructuralStepModel, samples: list[StepSample]) -> float:
    if not samples:
        return 0.0
    return sum(abs(model.step_seconds(s.batch, s.moe) - s.seconds) / s.seconds for s in samples) / len(samples)
