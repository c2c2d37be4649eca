"""Step-latency model: how long one engine step takes for a given batch composition.

Shared by every layer: the request policy turns job sizes into seconds with it, the dispatcher
predicts an engine's time-to-drain with it, and the simulator advances its clock with it.
"""

from perf_model.batch import BatchShape, MoeFactors, StepTimeModel

__all__ = ["BatchShape", "MoeFactors", "StepTimeModel"]
