"""An expert placement: which logical expert sits in each physical slot of each MoE layer.

The representation is SGLang's: ``phy2log`` [L, P] int, P = E + R physical slots, GPU g owning
slots ``g*S .. (g+1)*S - 1`` with S = P / G, nodes owning ``G / N`` consecutive GPUs. The JSON file
``{"physical_to_logical_map": [[...], ...]}`` is exactly what SGLang's ``--init-expert-location``
accepts (``srt/eplb/expert_location.py``, ``init_by_mapping``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moesched_base.atomic import atomic_write_json


def check_layout(num_experts: int, num_redundant: int, num_gpus: int, num_nodes: int) -> int:
    """Validate a cluster layout and return the slots per GPU S = (E + R) / G."""
    if num_gpus < 1 or num_nodes < 1 or num_redundant < 0 or num_experts < 1:
        raise ValueError(f"need experts >= 1, redundant >= 0, gpus >= 1, nodes >= 1; got E={num_experts} "
                         f"R={num_redundant} G={num_gpus} N={num_nodes}")
    if (num_experts + num_redundant) % num_gpus:
        raise ValueError(f"experts + redundant = {num_experts} + {num_redundant} = "
                         f"{num_experts + num_redundant} is not divisible by --num-gpus {num_gpus}")
    if num_gpus % num_nodes:
        raise ValueError(f"--num-gpus {num_gpus} is not divisible by --num-nodes {num_nodes}")
    return (num_experts + num_redundant) // num_gpus


@dataclass(frozen=True)
class Placement:
    """``phy2log`` [L, P] logical expert id per physical slot, on ``num_gpus`` GPUs in ``num_nodes`` nodes."""

    phy2log: np.ndarray
    num_experts: int
    num_gpus: int
    num_nodes: int = 1

    def __post_init__(self) -> None:
        arr = np.asarray(self.phy2log, dtype=np.int64)
        object.__setattr__(self, "phy2log", arr)
        if arr.ndim != 2:
            raise ValueError(f"physical_to_logical_map must be [layers, slots], got shape {list(arr.shape)}")
        check_layout(self.num_experts, arr.shape[1] - self.num_experts, self.num_gpus, self.num_nodes)
        if arr.size and (arr.min() < 0 or arr.max() >= self.num_experts):
            raise ValueError(f"physical_to_logical_map has ids outside [0, {self.num_experts})")
        missing = self.counts() == 0
        if missing.any():
            layer, expert = map(int, np.argwhere(missing)[0])
            raise ValueError(f"physical_to_logical_map: logical expert {expert} has no replica at layer {layer}")

    @property
    def num_layers(self) -> int:
        return int(self.phy2log.shape[0])

    @property
    def num_slots(self) -> int:
        return int(self.phy2log.shape[1])

    @property
    def slots_per_gpu(self) -> int:
        return self.num_slots // self.num_gpus

    @property
    def gpus_per_node(self) -> int:
        return self.num_gpus // self.num_nodes

    def counts(self) -> np.ndarray:
        """[L, E] number of replicas of each logical expert."""
        return np.stack([np.bincount(row, minlength=self.num_experts) for row in self.phy2log])

    def hosts(self) -> np.ndarray:
        """[L, E, G] number of replicas of expert e on GPU g."""
        out = np.zeros((self.num_layers, self.num_experts, self.num_gpus), dtype=np.int64)
        gpu_of_slot = np.arange(self.num_slots) // self.slots_per_gpu
        for layer in range(self.num_layers):
            np.add.at(out[layer], (self.phy2log[layer], gpu_of_slot), 1)
        return out

    def node_hosts(self) -> np.ndarray:
        """[L, E, N] number of replicas of expert e on node n."""
        return self.hosts().reshape(self.num_layers, self.num_experts, self.num_nodes, -1).sum(-1)

    def to_json_dict(self) -> dict[str, list[list[int]]]:
        """SGLang's ``--init-expert-location`` content."""
        return {"physical_to_logical_map": self.phy2log.tolist()}


def write_placement(path: str | Path, placement: Placement) -> Path:
    """Atomically write SGLang's placement JSON."""
    return atomic_write_json(path, placement.to_json_dict(), indent=None)


def read_placement(path: str | Path, num_experts: int, num_gpus: int, num_nodes: int = 1) -> Placement:
    """Read a placement JSON (``physical_to_logical_map``) and validate it against the layout."""
    source = str(path)
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "physical_to_logical_map" not in data:
        raise ValueError(f"{source}: expected an object with field 'physical_to_logical_map'")
    try:
        return Placement(np.asarray(data["physical_to_logical_map"], dtype=np.int64),
                         num_experts=num_experts, num_gpus=num_gpus, num_nodes=num_nodes)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{source}: {exc}") from None
