"""Fit :class:`~perf_model.structural.StepCoefficients` to measured steps by least squares.

Rows are measured steps (:class:`StepSample`). The model is linear in its coefficients, so fitting
is a non-negative least-squares problem on the feature matrix ``X`` [n, 11] (columns in
:data:`~perf_model.structural.FEATURE_NAMES` order, then the per-request overhead count) against measured seconds ``y`` [n]. Columns the
caller keeps fixed (or that are all zero in the data, e.g. the all-to-all column without expert
parallelism) keep their ``base`` value and their contribution is subtracted before fitting. So does
``prefill_step_s`` when the data cannot tell it from the other fitted columns (e.g. a sweep whose
only prefill rows are lone requests, each also carrying one per-request overhead, or data with
prefill in every row).
Quality is reported as R^2 and MAPE on the rows.

A row may also contain per-request overheads (``StepSample.request_overheads``: a lone request's
TTFT is one prefill step plus one overhead, :mod:`perf_model.request_overhead`). When any row does,
the overhead is fitted as one more non-negative column, ``request_overhead_s`` (the count per row),
so it is estimated separately from the per-step ``overhead_s`` instead of being smeared over it.
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
    """One measured engine step: its batch, the placement factors, and the wall time in seconds.

    ``request_overheads`` is the number of per-request overheads the measured time also contains
    (1 for a lone request's TTFT, 0 for a step timed inside a stream, e.g. TPOT).
    """

    batch: BatchShape
    seconds: float
    moe: MoeFactors | None = None
    request_overheads: int = 0


#: name of the per-request overhead column (fitted when a row has ``request_overheads > 0``)
REQUEST_OVERHEAD = "request_overhead_s"


@dataclass(frozen=True)
class FitReport:
    """Result of :func:`fit_step_model`.

    Attributes:
        model: the fitted model.
        r2: coefficient of determination on the rows.
        mape: mean absolute percentage error on the rows (fraction, 0.05 = 5%).
        samples: number of rows.
        fitted: names of the coefficients fitted (the others kept their base value).
        request_overhead_s: per-request overhead (seconds) in the rows that contain one
            (:data:`REQUEST_OVERHEAD`; fitted, fixed, or 0 when no row contains one).
    """

    model: StructuralStepModel
    r2: float
    mape: float
    samples: int
    fitted: tuple[str, ...]
    request_overhead_s: float = 0.0


#: column of ``prefill_step_s`` (fitted only when the rows can identify it)
PREFILL_STEP = FEATURE_NAMES.index("prefill_step_s")


def _adds_rank(features: np.ndarray, free: np.ndarray, column: int) -> bool:
    """Whether ``column`` (one of the ``free`` columns of ``features`` [n, m]) is independent of
    the other free columns."""
    others = free.copy()
    others[column] = False
    unit = features / np.maximum(np.linalg.norm(features, axis=0), 1e-300)
    return np.linalg.matrix_rank(unit[:, free]) > np.linalg.matrix_rank(unit[:, others])


def feature_matrix(samples: Sequence[StepSample], structure: ModelStructure) -> np.ndarray:
    """Features [n, 10] of ``samples`` under ``structure``."""
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


def evaluate(model: StructuralStepModel, samples: Sequence[StepSample],
             request_overhead_s: float = 0.0) -> tuple[float, float]:
    """(R^2, MAPE) of ``model`` (plus ``request_overhead_s`` per overhead a row contains) on ``samples``."""
    measured = np.array([s.seconds for s in samples], dtype=float)
    predicted = np.array([model.step_seconds(s.batch, s.moe) + s.request_overheads * request_overhead_s
                          for s in samples], dtype=float)
    return fit_quality(predicted, measured)


def fit_step_model(samples: Sequence[StepSample], structure: ModelStructure,
                   base: StepCoefficients | None = None, fixed: Iterable[str] = (),
                   name: str = "fitted", request_overhead_s: float = 0.0) -> FitReport:
    """Fit the coefficients not in ``fixed`` to ``samples`` by non-negative least squares.

    Args:
        samples: measured steps (>= 2, seconds > 0).
        structure: fixed structure the features are computed under.
        base: values of the coefficients that are not fitted (default all 0).
        fixed: coefficient names to keep at their ``base`` value (may include
            :data:`REQUEST_OVERHEAD`, kept at ``request_overhead_s``).
        name: label of the fitted model.
        request_overhead_s: value of the per-request overhead when it is fixed.

    Raises ValueError when there are too few rows, a non-positive time or an unknown name.
    """
    if len(samples) < 2:
        raise ValueError(f"fit: need at least 2 measured steps, got {len(samples)}")
    names = (*FEATURE_NAMES, REQUEST_OVERHEAD)
    fixed_names = set(fixed)
    unknown = fixed_names - set(names)
    if unknown:
        raise ValueError(f"fit: unknown coefficient names {sorted(unknown)}; expected {names}")
    measured = np.array([s.seconds for s in samples], dtype=float)
    if not (np.isfinite(measured).all() and (measured > 0).all()):
        raise ValueError("fit: every measured step time must be finite and > 0")
    base = base or StepCoefficients()
    overheads = np.array([[float(s.request_overheads)] for s in samples])
    features = np.hstack([feature_matrix(samples, structure), overheads])
    base_vector = np.array([*(getattr(base, n) for n in FEATURE_NAMES), request_overhead_s])
    free = np.array([n not in fixed_names and bool(np.any(features[:, i] != 0)) for i, n in enumerate(names)])
    if free[PREFILL_STEP]:
        free[PREFILL_STEP] = _adds_rank(features, free, PREFILL_STEP)
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
                     fitted=tuple(n for n, f in zip(names, free) if f), request_overhead_s=float(values[-1]))
