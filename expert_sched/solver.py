"""CP-SAT expert placement: replicate hot experts and co-locate experts that consecutive layers chain.

For MoE layer l the model decides, for every logical expert e and GPU g, whether g holds a replica
of e (``y[l, e, g]``, at most one replica of an expert per GPU) and how many replicas e gets
(``c[l, e]``: the EPLB count, or one more / one fewer for the ``count_freedom`` experts on each
side of EPLB's replication boundary). Constraints:

- exact slots: ``sum_e y[l, e, g] = S`` for every GPU, so each layer has exactly P = E + R replicas;
- every expert has ``c[l, e] = sum_g y[l, e, g] >= 1`` replicas;
- balance floor: every GPU's load ``sum_e y[l, e, g] * w[l, e] / c[l, e]`` is at most ``cap[l]``,
  the larger of EPLB's heaviest GPU and ``mean / (b_eplb[l] - balance_tolerance)``; hence each
  layer's balancedness, and so SGLang's and vLLM's averages, is at least EPLB's minus the tolerance
  (loads are rounded up to integers, 1e6 units per layer, so the bound holds to about 1e-6);
- migration mode: at most ``max_moves`` replicas per GPU and layer that the current placement did
  not have on that GPU; the balance floor becomes a heavily penalised soft constraint there, since
  the current placement may be unable to reach it in K moves.

Objective: co-location (``metrics.colocation``). Tokens with top-1 expert a at layer l and b at l+1
stay on GPU g with weight ``T[l, a, b] * y[l, a, g] / c[l, a] * y[l+1, b, g]``: quadratic across
layers. Decomposition: block coordinate ascent over layers. Each CP-SAT model holds one layer with
its neighbours fixed, which makes the objective linear:

    sum_{b, g} y[l, b, g] * sum_a T[l-1, a, b] * h[l-1, a, g] / c[l-1, a]      (arrivals from l-1)
  + sum_{a, g} y[l, a, g] / c[l, a] * sum_b T[l, a, b] * [h[l+1, b, g] > 0]   (departures to l+1)

A forward pass places layers 1..L-1 in order (a third of the time), then passes over all layers
repeat until the time is up or a pass improves nothing. Each model is warm-started from the
incumbent (first EPLB, or the current placement in migration mode) with ``AddHint``; a re-solved
layer replaces the incumbent only if the whole placement's co-location improves. An expert may only
move to its ``gpu_candidates`` GPUs with the largest linear gain (plus those it is on), which keeps
each model small at DeepSeek-V3 scale. A joint model of several layers (quadratic terms linearised
with one Boolean per pair and GPU) was measured worse within the same time on OLMoE (co-location
1.33x EPLB versus 1.92x in 20 s at G=8, R=8): CP-SAT found few improving solutions of it.

The reported objective and bound are summed over the last CP-SAT solve of every layer, in token
transitions: CP-SAT's bound for each layer given its neighbours, i.e. a bound for the decomposition,
not for the joint problem.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from ortools.sat.python import cp_model

from .eplb import eplb_placement
from .metrics import colocation_of_hosts, gpu_loads
from .placement import Placement, check_layout
from .stats import RoutingStats

LOAD_UNITS = 1_000_000  # integer load units per layer
OBJECTIVE_UNITS = 1_000_000  # integer objective units for all transitions of a window


@dataclass
class SolverOptions:
    """Knobs of :func:`solve_placement` (times in seconds)."""

    time_limit: float = 60.0
    num_workers: int = 2
    balance_tolerance: float = 0.0
    count_freedom: int = 8
    gpu_candidates: int = 8
    current: Placement | None = None
    max_moves: int | None = None
    seed: int = 0
    progress: bool = False


@dataclass
class LayerSolve:
    """The last CP-SAT solve of one layer (objective and bound in token transitions)."""

    layer: int
    status: str
    objective: float
    bound: float
    seconds: float


@dataclass
class SolveResult:
    """The solved placement, the EPLB baseline and what CP-SAT reported."""

    placement: Placement
    eplb: Placement
    objective: float  # co-located transitions counted by the layer models, summed (see module doc)
    bound: float  # CP-SAT's bounds on those, summed
    solve_seconds: float
    layer_solves: list[LayerSolve] = field(default_factory=list)

    @property
    def gap(self) -> float:
        """Relative gap ``(bound - objective) / bound`` (0 = every layer model proven optimal)."""
        return 0.0 if self.bound <= 0 else max(0.0, (self.bound - self.objective) / self.bound)


def _allowed_counts(load: np.ndarray, base: np.ndarray, freedom: int, num_gpus: int,
                    has_redundancy: bool) -> list[list[int]]:
    """Replica counts each expert may take: its base count, +1 for the ``freedom`` experts with the
    highest load per replica, -1 for the ``freedom`` replicated experts with the lowest load per
    replica after losing one."""
    allowed = [{int(c)} for c in base]
    if freedom > 0 and has_redundancy:
        for e in np.argsort(-load / base, kind="stable")[:freedom]:
            if base[e] < num_gpus:
                allowed[e].add(int(base[e]) + 1)
        replicated = np.flatnonzero(base > 1)
        for e in replicated[np.argsort(load[replicated] / (base[replicated] - 1), kind="stable")][:freedom]:
            allowed[e].add(int(base[e]) - 1)
    return [sorted(a) for a in allowed]


def _candidate_gpus(gain: np.ndarray, hint: np.ndarray, allowed: list[list[int]], width: int,
                    rng: np.random.Generator) -> list[np.ndarray]:
    """Per expert, the GPUs it may occupy: those it holds in ``hint`` [E, G] and the ``width`` (at
    least one more than its largest count) with the highest ``gain`` [E, G] (ties broken randomly)."""
    num_experts, num_gpus = gain.shape
    noisy = gain + rng.random(gain.shape) * 1e-9 * max(float(gain.max()), 1.0)
    out = []
    for e in range(num_experts):
        take = min(num_gpus, max(width, max(allowed[e]) + 1))
        top = np.argsort(-noisy[e], kind="stable")[:take]
        out.append(np.union1d(top, np.flatnonzero(hint[e])))
    return out


class _LayerModel:
    """CP-SAT model of one layer given its neighbours (see module docstring)."""

    def __init__(self, load: np.ndarray, allowed: list[list[int]], cap: int, slots: int,
                 candidates: list[np.ndarray], arrive: np.ndarray, depart: np.ndarray,
                 current: np.ndarray | None, max_moves: int | None):
        """load [E] tokens; arrive/depart [E, G] linear gains (departures before dividing by c)."""
        model = self.model = cp_model.CpModel()
        num_experts, num_gpus = arrive.shape
        self.num_gpus = num_gpus
        self.y: list[dict[int, cp_model.IntVar]] = []
        per_gpu_load: list[list[cp_model.LinearExprT]] = [[] for _ in range(num_gpus)]
        per_gpu_slots: list[list[cp_model.IntVar]] = [[] for _ in range(num_gpus)]
        objective: list[tuple[cp_model.IntVar, float]] = []
        unit = LOAD_UNITS / max(float(load.sum()), 1e-12)
        self.r: list[dict[int, cp_model.IntVar]] = []
        self.z: dict[tuple[int, int, int], cp_model.IntVar] = {}
        for e in range(num_experts):
            y = {int(g): model.NewBoolVar("") for g in candidates[e]}
            self.y.append(y)
            counts = allowed[e]
            r = {k: model.NewBoolVar("") for k in counts} if len(counts) > 1 else {}
            self.r.append(r)
            if r:
                model.AddExactlyOne(r.values())
                model.Add(sum(y.values()) == sum(k * v for k, v in r.items()))
            else:
                model.Add(sum(y.values()) == counts[0])
            for g, var in y.items():
                per_gpu_slots[g].append(var)
                objective.append((var, arrive[e, g]))
                if not r:  # fixed count: load and departures are linear in y
                    per_gpu_load[g].append(math.ceil(load[e] / counts[0] * unit) * var)
                    objective.append((var, depart[e, g] / counts[0]))
                    continue
                zs = []
                for k in counts:  # z = y AND (count == k)
                    z = self.z[(e, g, k)] = model.NewBoolVar("")
                    model.AddImplication(z, r[k])
                    zs.append(z)
                    per_gpu_load[g].append(math.ceil(load[e] / k * unit) * z)
                    objective.append((z, depart[e, g] / k))
                model.Add(sum(zs) == var)
        soft = current is not None
        self.excess = model.NewIntVar(0, LOAD_UNITS, "") if soft else 0
        for g in range(num_gpus):
            model.Add(sum(per_gpu_slots[g]) == slots)
            model.Add(sum(per_gpu_load[g]) <= cap + self.excess)
            if current is not None and max_moves is not None:
                model.Add(sum(self.y[e][g] for e in range(num_experts)
                              if g in self.y[e] and current[e, g] == 0) <= max_moves)
        total = float(arrive.sum() + depart.sum())
        self.scale = OBJECTIVE_UNITS / max(total, 1e-12)
        terms = [round(w * self.scale) * v for v, w in objective if round(w * self.scale) > 0]
        model.Maximize(sum(terms) - (OBJECTIVE_UNITS + 1) * self.excess)

    def hint(self, hosts: np.ndarray) -> None:
        """Warm start from replicas per GPU [E, G]."""
        counts = hosts.sum(1)
        for e, y in enumerate(self.y):
            for g, var in y.items():
                self.model.AddHint(var, bool(hosts[e, g]))
            for k, var in self.r[e].items():
                self.model.AddHint(var, int(counts[e]) == k)
        for (e, g, k), var in self.z.items():
            self.model.AddHint(var, bool(hosts[e, g]) and int(counts[e]) == k)

    def hosts(self, solver: cp_model.CpSolver) -> np.ndarray:
        """[E, G] 0/1 replicas of the solution."""
        out = np.zeros((len(self.y), self.num_gpus), dtype=np.int64)
        for e, y in enumerate(self.y):
            for g, var in y.items():
                out[e, g] = solver.BooleanValue(var)
        return out


class _Progress(cp_model.CpSolverSolutionCallback):
    def __init__(self, bar, label: str):
        super().__init__()
        self.bar = bar
        self.label = label

    def on_solution_callback(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.label} objective={self.ObjectiveValue():.0f} "
                                     f"bound={self.BestObjectiveBound():.0f}", refresh=True)


def _balance_caps(stats: RoutingStats, eplb: Placement, tolerance: float) -> np.ndarray:
    """[L] per-GPU load cap in integer units (see module docstring)."""
    loads = gpu_loads(eplb, stats.load)
    unit = LOAD_UNITS / np.maximum(stats.load.sum(1), 1e-12)
    per_replica = np.ceil(stats.load / eplb.counts() * unit[:, None])
    eplb_max = np.einsum("leg,le->lg", eplb.hosts(), per_replica).max(1)
    floor = np.maximum(loads.mean(1) / np.maximum(loads.max(1), 1e-12) - tolerance, 1e-9)
    return np.maximum(eplb_max, np.floor(LOAD_UNITS / loads.shape[1] / floor))


def _rows_from_hosts(hosts: np.ndarray) -> np.ndarray:
    """[L, P] slot rows (each GPU's experts in ascending id) from [L, E, G] replicas per GPU."""
    return np.stack([np.concatenate([np.flatnonzero(layer[:, g]) for g in range(layer.shape[1])])
                     for layer in hosts])


def _excess(stats: RoutingStats, hosts: np.ndarray, caps: np.ndarray) -> float:
    """Total load above the caps (integer units) of replicas per GPU [L, E, G]."""
    unit = LOAD_UNITS / np.maximum(stats.load.sum(1), 1e-12)
    per_replica = stats.load / np.maximum(hosts.sum(2), 1) * unit[:, None]
    loads = np.einsum("leg,le->lg", hosts, per_replica)
    return float(np.clip(loads - caps[:, None], 0, None).sum())


def _score(stats: RoutingStats, hosts: np.ndarray, caps: np.ndarray) -> tuple[float, float]:
    """(-excess load, co-location) of replicas per GPU [L, E, G]: larger is better, lexicographically."""
    return (-round(_excess(stats, hosts, caps)), colocation_of_hosts(hosts, stats.transitions))


def _spread_duplicates(load: np.ndarray, hosts: np.ndarray, cap: float) -> bool:
    """Make a layer's replicas per GPU [E, G] (changed in place) hold each expert at most once per GPU.

    EPLB may put two replicas of an expert on one GPU, which the model (one replica per GPU) cannot
    express, so its hint would be infeasible. Each extra copy swaps with the single-replica expert of
    closest load on another GPU, when both GPUs stay within ``cap`` (integer load units).
    Returns True if anything moved.
    """
    unit = LOAD_UNITS / max(float(load.sum()), 1e-12)
    per_replica = np.ceil(load / hosts.sum(1) * unit)
    gpu_load = per_replica @ hosts
    moved = False
    for e, g in zip(*np.nonzero(hosts > 1)):
        while hosts[e, g] > 1:
            singles = np.argwhere((hosts == 1) & (hosts[e] == 0)[None, :] & (hosts[:, g] == 0)[:, None])
            if not len(singles):
                return moved
            f, other = singles.T
            after_g = gpu_load[g] - per_replica[e] + per_replica[f]
            after_other = gpu_load[other] - per_replica[f] + per_replica[e]
            ok = (after_g <= cap) & (after_other <= cap)
            if not ok.any():
                return moved
            best = np.flatnonzero(ok)[np.argmin(np.abs(per_replica[f[ok]] - per_replica[e]))]
            f, other = int(f[best]), int(other[best])
            hosts[e, g] -= 1
            hosts[f, g] += 1
            hosts[f, other] -= 1
            hosts[e, other] += 1
            gpu_load[g], gpu_load[other] = after_g[best], after_other[best]
            moved = True
    return moved


def _arrivals(transitions: np.ndarray, prev_hosts: np.ndarray) -> np.ndarray:
    """[E, G] transitions into each expert b that would stay if b sat on GPU g (prev layer fixed)."""
    return transitions.T @ (prev_hosts / prev_hosts.sum(1, keepdims=True))


def _departures(transitions: np.ndarray, next_hosts: np.ndarray) -> np.ndarray:
    """[E, G] transitions out of expert a landing on an expert that GPU g holds at the next layer."""
    return transitions @ (next_hosts > 0).astype(np.float64)


def solve_placement(stats: RoutingStats, num_gpus: int, num_redundant: int, num_nodes: int = 1,
                    num_groups: int | None = None, options: SolverOptions | None = None) -> SolveResult:
    """Solve a placement for ``stats`` on ``num_gpus`` GPUs with ``num_redundant`` extra replicas.

    Returns the placement, the EPLB baseline and CP-SAT's objective/bound; raises ``ValueError``
    for impossible input.
    """
    opts = options or SolverOptions()
    start = time.monotonic()
    slots = check_layout(stats.num_experts, num_redundant, num_gpus, num_nodes)
    if stats.transitions is None or stats.num_layers < 2:
        raise ValueError(f"{stats.source}: co-location needs 'transitions' between at least two layers")
    if (opts.current is None) != (opts.max_moves is None):
        raise ValueError("migration mode needs both a current placement (--current) and --max-moves")
    eplb = eplb_placement(stats.load, num_gpus, num_redundant, num_nodes, num_groups)
    start_rows = eplb.phy2log
    current_hosts = None
    if opts.current is not None:
        if opts.current.phy2log.shape != eplb.phy2log.shape or opts.current.num_gpus != num_gpus:
            raise ValueError(f"current placement has shape {list(opts.current.phy2log.shape)} on "
                             f"{opts.current.num_gpus} GPUs, expected {list(eplb.phy2log.shape)} on {num_gpus}")
        current_hosts = opts.current.hosts()
        start_rows = opts.current.phy2log
    rows = start_rows.copy()
    hosts = Placement(rows, stats.num_experts, num_gpus, num_nodes).hosts()
    caps = _balance_caps(stats, eplb, opts.balance_tolerance)
    if current_hosts is None:
        for layer in range(stats.num_layers):
            if _spread_duplicates(stats.load[layer], hosts[layer], caps[layer]):
                rows[layer] = _rows_from_hosts(hosts[layer:layer + 1])[0]
    allowed = [_allowed_counts(stats.load[l], hosts[l].sum(1), opts.count_freedom, num_gpus, num_redundant > 0)
               for l in range(stats.num_layers)]
    rng = np.random.default_rng(opts.seed)
    solves: dict[int, LayerSolve] = {}
    bar = None
    if opts.progress:
        from tqdm import tqdm

        bar = tqdm(desc="placing", unit="layer", leave=False)

    def solve_layer(layer: int, budget: float, forward: bool) -> bool:
        """Re-solve ``layer`` with its neighbours fixed; True if the incumbent improved."""
        nonlocal hosts
        zeros = np.zeros((stats.num_experts, num_gpus))
        arrive = _arrivals(stats.transitions[layer - 1], hosts[layer - 1]) if layer > 0 else zeros
        has_next = not forward and layer + 1 < stats.num_layers
        depart = _departures(stats.transitions[layer], hosts[layer + 1]) if has_next else zeros
        gain = arrive + depart / hosts[layer].sum(1, keepdims=True)
        model = _LayerModel(stats.load[layer], allowed[layer], int(caps[layer]), slots,
                            _candidate_gpus(gain, hosts[layer], allowed[layer], opts.gpu_candidates, rng),
                            arrive, depart, None if current_hosts is None else current_hosts[layer],
                            opts.max_moves)
        model.hint(hosts[layer])
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = max(budget, 0.05)
        solver.parameters.num_workers = max(1, min(opts.num_workers, 2))
        solver.parameters.random_seed = opts.seed
        tick = time.monotonic()
        status = solver.Solve(model.model, _Progress(bar, f"layer {layer}"))
        if bar is not None:
            bar.update(1)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):  # keep the incumbent layer
            return False
        solves[layer] = LayerSolve(layer, solver.StatusName(status), solver.ObjectiveValue() / model.scale,
                                   solver.BestObjectiveBound() / model.scale, time.monotonic() - tick)
        candidate = hosts.copy()
        candidate[layer] = model.hosts(solver)
        if not forward and _score(stats, candidate, caps) <= _score(stats, hosts, caps):
            return False
        hosts = candidate
        rows[layer] = _rows_from_hosts(candidate[layer:layer + 1])[0]
        return True

    def remaining() -> float:
        return opts.time_limit - (time.monotonic() - start)

    try:
        # forward pass: layers 1..L-1, each after its predecessor, in a third of the time
        for layer in range(1, stats.num_layers):
            solve_layer(layer, (remaining() - 2 * opts.time_limit / 3) / (stats.num_layers - layer), forward=True)
        # block coordinate ascent over all layers until the time is up or nothing improves
        improved = True
        while improved and remaining() > 0.1:
            improved = False
            for layer in range(stats.num_layers):
                if remaining() <= 0.1:
                    break
                improved |= solve_layer(layer, min(remaining(), opts.time_limit / (3 * stats.num_layers)),
                                        forward=False)
    finally:
        if bar is not None:
            bar.close()
    placement = Placement(rows, stats.num_experts, num_gpus, num_nodes)
    return SolveResult(placement=placement, eplb=eplb,
                       objective=sum(s.objective for s in solves.values()),
                       bound=sum(s.bound for s in solves.values()),
                       solve_seconds=time.monotonic() - start, layer_solves=list(solves.values()))
