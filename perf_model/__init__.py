"""Step-latency model: how long one engine step takes for a given batch composition.

Shared by every layer: the request policy turns job sizes into seconds with it, the dispatcher
predicts an engine's time-to-drain with it, and the simulator advances its clock with it.

- :mod:`perf_model.batch`: what is asked (``BatchShape``, ``MoeFactors``, ``StepTimeModel``).
- :mod:`perf_model.structural`: the roofline-structured model, linear in eight coefficients.
- :mod:`perf_model.fit`: non-negative least squares from measured steps, with R^2 and MAPE.
- :mod:`perf_model.presets`: named defaults derived from cited public GPU measurements.
- :mod:`perf_model.model_file`: coefficient JSON files.
"""

from perf_model.batch import BatchShape, MoeFactors, StepTimeModel
from perf_model.structural import ModelStructure, StepCoefficients, StructuralStepModel

__all__ = ["BatchShape", "ModelStructure", "MoeFactors", "StepCoefficients", "StepTimeModel",
           "StructuralStepModel"]
