"""Fit :class:`~perf_model.structural.StepCoefficients` to measured steps by least squares.

Rows are measured steps (:class:`StepSample`). The model is linear in its coefficients, so fitting
is a non-negative least-squares problem on the feature matrix ``X`` [n, 9] (columns in
:data:`~perf_model.structural.FEATURE_NAMES` order) against measured seconds ``y`` [n]. Columns the
caller keeps fixed (or that are all zero in the data, e.g. the all-to-all column without expert
parallelism) keep their ``base`` value and their contribution is subtracted before fitting.
Quality is reported as R^2 and MAPE on the rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from perf_model.batch import BatchShape, MoeFactors
from perf_model.structural import (FEATURE_NAMES, ModelStructure, StepCoefficients,
                                   StructuralStepModel, step_features)


@dataclass(frozen=True)
class StepSample:
    """One measured engine step: its batch, the placement factors, and the wall time in seconds."""

    batch: BatchShape
    seconds: float
    moe: MoeFactors | None = None


@dataclass(frozen=True)
class FitReport:
    """Result of :func:`fit_step_model`.

    Attributes:
        model: the fitted model.
        r2: coefficient of determination on the rows.
        mape: mean absolute percentage error on the rows (fraction, 0.05 = 5%).
        samples: number of rows.
        fitted: names of the coefficients fitted (the others kept their base value).
    """

    model: StructuralStepModel
    r2: float
    mape: float
    samples: int
    fitted: tuple[str, ...]


def feature_matrix(samples: Sequence[StepSample], structure: ModelStructure) -> np.ndarray:
    """Features [n, 9] of ``samples`` under ``structure``."""
    return np.array([step_features(s.batch, s.moe, structure) for s in samples], dtype=float)


def nnls(a: np.ndarray, b: np.ndarray, max_iter: int = 200) -> np.ndarray:
    """Solve min ||a x - b|| subject to x >= 0 (Lawson-Hanson active set). a [n, m], b [n] -> x [m]."""
    n_cols = a.shape[1]
    x = np.zeros(n_cols)
    passive = np.zeros(n_cols, dtype=bool)
    for _ in range(max_iter):
        gradient = a.T @ (b - a @ x)
        candidates = ~passive & (gradient > 1e-12 * max(1.0, np.abs(gradient).max()))
        if not candidates.any():
            break
        passive[np.argmax(np.where(candidates, gradient, -np.inf))] = True
        while True:
            z = np.zeros(n_cols)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            shrinking = passive & (z <= 0)
            alpha = np.min(x[shrinking] / (x[shrinking] - z[shrinking]))
            x = x + alpha * (z - x)
            passive &= x > 1e-15
            x[~passive] = 0.0
    return x


def fit_quality(predicted: np.ndarray, measured: np.ndarray) -> tuple[float, float]:
    """(R^2, MAPE) of ``predicted`` against ``measured`` (both [n] seconds, measured > 0)."""
    residual = float(np.sum((measured - predicted) ** 2))
    total = float(np.sum((measured - measured.mean()) ** 2))
    r2 = 1.0 - residual / total if total > 0 else (1.0 if residual == 0 else 0.0)
    mape = float(np.mean(np.abs(predicted - measured) / measured))
    return r2, mape


def evaluate(model: StructuralStepModel, samples: Sequence[StepSample]) -> tuple[float, float]:
    """(R^2, MAPE) of ``model`` on ``samples``."""
    measured = np.array([s.seconds for s in samples], dtype=float)
    predicted = np.array([model.step_seconds(s.batch, s.moe) for s in samples], dtype=float)
    return fit_quality(predicted, measured)


def fit_step_model(samples: Sequence[StepSample], structure: ModelStructure,
                   base: StepCoefficients | None = None, fixed: Iterable[str] = (),
                   name: str = "fitted") -> FitReport:
    """Fit the coefficients not in ``fixed`` to ``samples`` by non-negative least squares.

    Args:
        samples: measured steps (>= 2, seconds > 0).
        structure: fixed structure the features are computed under.
        base: values of the coefficients that are not fitted (default all 0).
        fixed: coefficient names to keep at their ``base`` value.
        name: label of the fitted model.

    Raises ValueError when there are too few rows, a non-positive time or an unknown name.
    """
    if len(samples) < 2:
        raise ValueError(f"fit: need at least 2 measured steps, got {len(samples)}")
    unknown = set(fixed) - set(FEATURE_NAMES)
    if unknown:
        raise ValueError(f"fit: unknown coefficient names {sorted(unknown)}; expected {FEATURE_NAMES}")
    measured = np.array([s.seconds for s in samples], dtype=float)
    if not (np.isfinite(measured).all() and (measured > 0).all()):
        raise ValueError("fit: every measured step time must be finite and > 0")
    base = base or StepCoefficients()
    features = feature_matrix(samples, structure)
    base_vector = np.array([getattr(base, n) for n in FEATURE_NAMES])
    free = np.array([n not in set(fixed) and bool(np.any(features[:, i] != 0))
                     for i, n in enumerate(FEATURE_NAMES)])
    target = measured - features[:, ~free] @ base_vector[~free]
    # scale columns to unit norm so the active-set tolerances do not depend on feature units
    norms = np.linalg.norm(features[:, free], axis=0)
    solution = nnls(features[:, free] / norms, target) / norms
    values = base_vector.copy()
    values[free] = solution
    coefficients = replace(base, **{n: float(v) for n, v in zip(FEATURE_NAMES, values)})
    model = StructuralStepModel(structure, coefficients, name=name)
    r2, mape = fit_quality(features @ values, measured)
    return FitReport(model=model, r2=r2, mape=mape, samples=len(samples),
                     fitted=tuple(n for n, f in zip(FEATURE_NAMES, free) if f))
