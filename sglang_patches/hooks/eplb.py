"""Hook: offer moesched's expert-placement solver to SGLang as ``--eplb-algorithm moesched``.

SGLang resolves ``--eplb-algorithm`` (a free string, default ``auto``) with
``eplb_algorithms.compute_algorithm(raw_algorithm, num_groups, num_nodes)`` and runs it through
``eplb_algorithms.rebalance_experts(tokens_per_expert, num_physical_experts,
num_local_physical_experts, num_groups, num_nodes, algorithm)`` (``srt/eplb/eplb_algorithms/
__init__.py``), both from ``ExpertLocationMetadata.init_by_eplb``: at start-up for an
``--init-expert-location`` file holding ``logical_count``, and on every online rebalance of
``--enable-eplb``. Two AROUND hooks add a name without touching SGLang's enum:

* ``compute_algorithm``: ``"moesched"`` -> the marker :data:`ALGORITHM_NAME`; any other name goes
  to SGLang;
* ``rebalance_experts``: for the marker, call the solver on ``tokens_per_expert`` as numpy
  ([steps, L, E] token counts) and return SGLang's triple as int64 CPU tensors:
  ``physical_to_logical_map`` [L, P], ``logical_to_physical_map`` [L, E, X] padded with -1, and
  ``logical_count`` [L, E] (replicas per expert); other algorithms go to SGLang.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from sglang.srt.eplb import eplb_algorithms
from sglang.srt.plugins.hook_registry import HookRegistry, HookType

COMPUTE_ALGORITHM = "sglang.srt.eplb.eplb_algorithms.compute_algorithm"
REBALANCE_EXPERTS = "sglang.srt.eplb.eplb_algorithms.rebalance_experts"
ALGORITHM_NAME = "moesched"

#: solver(tokens_per_expert [steps, L, E], num_physical_experts, num_local_physical_experts,
#:        num_groups, num_nodes, **inputs) -> (phy2log [L, P], log2phy [L, E, X], logcnt [L, E])
Rebalance = Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]

logger = logging.getLogger("moesched.sglang")

_REBALANCE_SIGNATURE = inspect.signature(eplb_algorithms.rebalance_experts)
_COMPUTE_SIGNATURE = inspect.signature(eplb_algorithms.compute_algorithm)


class EplbHooks:
    """The two AROUND hooks around SGLang's EPLB algorithm registry.

    Args:
        rebalance: the solver (signature above).
        make_inputs: returns the solver's extra keyword inputs (transitions, options); called
            once, on the first ``moesched`` rebalance.
    """

    def __init__(self, rebalance: Rebalance, make_inputs: Callable[[], Mapping[str, Any]]) -> None:
        self.rebalance = rebalance
        self._make_inputs = make_inputs
        self._inputs: Mapping[str, Any] | None = None
        self.calls = 0

    def compute_algorithm(self, original: Callable, *args: Any, **kwargs: Any) -> Any:
        """AROUND ``compute_algorithm``: claim the name ``moesched``."""
        bound = _COMPUTE_SIGNATURE.bind(*args, **kwargs)
        if bound.arguments["raw_algorithm"] == ALGORITHM_NAME:
            return ALGORITHM_NAME
        return original(*args, **kwargs)

    def rebalance_experts(self, original: Callable, *args: Any, **kwargs: Any) -> Any:
        """AROUND ``rebalance_experts``: run our solver for the ``moesched`` marker."""
        call = _REBALANCE_SIGNATURE.bind(*args, **kwargs).arguments
        if call["algorithm"] != ALGORITHM_NAME:
            return original(*args, **kwargs)
        start = time.perf_counter()
        if self._inputs is None:
            self._inputs = self._make_inputs()
        counts = call["tokens_per_expert"].detach().to("cpu", torch.float64).numpy()
        phy2log, log2phy, logcnt = self.rebalance(
            counts, call["num_physical_experts"], call["num_local_physical_experts"],
            call["num_groups"], call["num_nodes"], **self._inputs)
        self.calls += 1
        logger.info("moesched eplb: placement #%d for %d layers x %d slots (%d per GPU) from "
                    "%d step(s) of counts in %.2f s", self.calls, phy2log.shape[0],
                    phy2log.shape[1], call["num_local_physical_experts"], counts.shape[0],
                    time.perf_counter() - start)
        return tuple(torch.as_tensor(np.asarray(a, dtype=np.int64)) for a in
                     (phy2log, log2phy, logcnt))

    def register(self) -> None:
        """Register both AROUND hooks with SGLang's ``HookRegistry``."""
        HookRegistry.register(COMPUTE_ALGORITHM, self.compute_algorithm, HookType.AROUND)
        HookRegistry.register(REBALANCE_EXPERTS, self.rebalance_experts, HookType.AROUND)
