"""CP-SAT expert placement: replicate hot experts, co-locate experts that consecutive layers chain
and, optionally, experts that the same tokens select together (DeepEP normal-mode fan-out).

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

Objective (``objective``): ``colocation`` maximises ``metrics.colocation`` (share of top-1
transitions that stay on one GPU); ``fanout`` maximises ``metrics.pair_colocation_of_hosts`` (share
of same-layer co-activated pairs sharing a GPU, the DeepEP normal-mode fan-out proxy); ``both``
maximises their sum. Transitions a -> b stay on GPU g with weight
``T[l, a, b] * y[l, a, g] / c[l, a] * y[l+1, b, g]``: quadratic across layers. Decomposition: block
coordinate ascent over layers. Each CP-SAT model holds one layer with its neighbours fixed, which
makes the transition terms linear:

    sum_{b, g} y[l, b, g] * sum_a T[l-1, a, b] * h[l-1, a, g] / c[l-1, a]      (arrivals from l-1)
  + sum_{a, g} y[l, a, g] / c[l, a] * sum_b T[l, a, b] * [h[l+1, b, g] > 0]   (departures to l+1)

The fan-out terms stay quadratic inside the layer: a Boolean ``z[a, b, g] <= y[a, g], y[b, g]`` with
weight ``2 C[l, a, b] / (c[a] c[b])`` (incumbent counts) for each expert's ``fanout_partners`` most
co-activated partners and their common candidate GPUs.

Start: EPLB (or the current placement in migration mode), then a forward pass that places layers
1..L-1 in order given their predecessor; the forward pass is kept only if it scores better than
its start (so the result never scores below EPLB's / the current placement's); passes over all
layers then repeat until the budget is spent or a pass improves nothing. Each model is warm-started from the incumbent with ``AddHint``; a re-solved layer replaces the
incumbent only if the whole placement's objective improves. An expert may only move to its
``gpu_candidates`` GPUs with the largest linear gain (plus those it is on), which keeps each model
small at DeepSeek-V3 scale. A joint model of several layers (quadratic terms linearised with one
Boolean per pair and GPU) was measured worse within the same time on OLMoE (co-location 1.33x EPLB
versus 1.92x in 20 s at G=8, R=8): CP-SAT found few improving solutions of it. A networkx
graph-partitioning seed (recursive Kernighan-Lin on the (layer, expert) co-usage graph, repaired
layer by layer) was measured as a further start and removed: no reliable gain (docs/expert_sched.md).

Budget: ``time_limit`` wall-clock seconds, or, with ``deterministic_time``, CP-SAT's deterministic
time summed over the layer solves (one worker, fixed ``seed``): the same input then gives the same
placement on any machine at any load (the wall time is not bounded then).

The reported objective and bound are summed over the last CP-SAT solve of every layer, in units
of the objective (shares of all transitions / co-activated pairs): CP-SAT's bound for each layer
given its neighbours, i.e. a bound for the decomposition, not for the joint problem.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from ortools.sat.python import cp_model

from .eplb import eplb_placement
from .metrics import colocation_of_hosts, gpu_loads, kept_transitions, pair_colocation_of_hosts
from .placement import Placement, check_layout
from .stats import RoutingStats

LOAD_UNITS = 1_000_000  # integer load units per layer
OBJECTIVE_UNITS = 1_000_000  # integer objective units for all gains of one layer model
OBJECTIVES = ("colocation", "fanout", "both")


@dataclass
class SolverOptions:
    """Knobs of :func:`solve_placement` (times in seconds; see the module docstring)."""

    time_limit: float = 60.0
    num_workers: int = 2
    balance_tolerance: float = 0.0
    count_freedom: int = 8
    gpu_candidates: int = 8
    current: Placement | None = None
    max_moves: int | None = None
    seed: int = 0
    progress: bool = False
    objective: str = "colocation"
    fanout_partners: int = 4
    deterministic_time: float | None = None


@dataclass
class LayerSolve:
    """The last CP-SAT solve of one layer (objective and bound in objective units)."""

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
    objective: float  # objective counted by the layer models, summed (see module doc)
    bound: float  # CP-SAT's bounds on those, summed
    solve_seconds: float
    layer_solves: list[LayerSolve] = field(default_factory=list)
    start: str = "forward"  # the better start: "eplb"/"current" (as given) or "forward" (pass from it)

    @property
    def gap(self) -> float:
        """Relative gap ``(bound - objective) / bound`` (0 = every layer model proven optimal)."""
        return 0.0 if self.bound <= 0 else max(0.0, (self.bound - self.objective) / self.bound)


@dataclass(frozen=True)
class _Weights:
    """Objective weight per transition (``colocation``) and per ordered co-activated pair (``fanout``)."""

    colocation: float
    fanout: float

    def score(self, hosts: np.ndarray, stats: RoutingStats) -> float:
        """The objective of replicas per GPU [L, E, G]: weighted shares (see module docstring)."""
        value = 0.0
        if self.colocation:
            value += colocation_of_hosts(hosts, stats.transitions)
        if self.fanout:
            value += pair_colocation_of_hosts(hosts, stats.coactivation)
        return value


def _objective_weights(stats: RoutingStats, objective: str) -> _Weights:
    """Weights making the objective ``[colocation share] + [pair share]``; checks the data exists."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}")
    colocation = fanout = 0.0
    if objective in ("colocation", "both"):
        if stats.transitions is None or stats.num_layers < 2 or stats.transitions.sum() <= 0:
            raise ValueError(f"{stats.source}: objective {objective!r} needs 'transitions' between at "
                             "least two layers")
        colocation = 1.0 / float(stats.transitions.sum())
    if objective in ("fanout", "both"):
        if stats.coactivation is None or stats.coactivation.sum() <= 0:
            raise ValueError(f"{stats.source}: objective {objective!r} needs 'coactivation' (a per-token "
                             "recorder dump or an .npz/.json with field 'coactivation')")
        fanout = 1.0 / float(stats.coactivation.sum())
    return _Weights(colocation, fanout)


class _Budget:
    """What the solver may still spend: wall-clock seconds since creation, or (``deterministic``)
    CP-SAT deterministic time summed over the solves charged to it."""

    def __init__(self, limit: float, deterministic: bool):
        self.limit = limit
        self.deterministic = deterministic
        self.start = time.monotonic()
        self.used = 0.0

    def remaining(self) -> float:
        return self.limit - (self.used if self.deterministic else time.monotonic() - self.start)

    def configure(self, solver: cp_model.CpSolver, amount: float) -> None:
        """Give ``solver`` at most ``amount`` of this budget."""
        if self.deterministic:
            solver.parameters.max_deterministic_time = amount
        else:
            solver.parameters.max_time_in_seconds = amount

    def charge(self, solver: cp_model.CpSolver) -> None:
        self.used += solver.deterministic_time


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


@dataclass(frozen=True)
class _LayerGains:
    """Objective of one layer model: ``arrive`` [E, G] per replica, ``depart`` [E, G] divided by the
    expert's count, ``pairs`` (a, b, weight) for a and b sharing a GPU."""

    arrive: np.ndarray
    depart: np.ndarray
    pairs: list[tuple[int, int, float]]

    def linear(self, counts: np.ndarray, hosts: np.ndarray) -> np.ndarray:
        """[E, G] gain of one replica of e on g with the incumbent ``hosts`` [E, G] elsewhere."""
        gain = self.arrive + self.depart / counts[:, None]
        for a, b, w in self.pairs:
            gain[a] += w * (hosts[b] > 0)
            gain[b] += w * (hosts[a] > 0)
        return gain


class _LayerModel:
    """CP-SAT model of one layer given its neighbours (see module docstring)."""

    def __init__(self, load: np.ndarray, allowed: list[list[int]], cap: int, slots: int,
                 candidates: list[np.ndarray], gains: _LayerGains, current: np.ndarray | None,
                 max_moves: int | None):
        """load [E] tokens; cap in integer load units; current [E, G] replicas (migration mode)."""
        model = self.model = cp_model.CpModel()
        num_experts, num_gpus = gains.arrive.shape
        self.num_gpus = num_gpus
        self.y: list[dict[int, cp_model.IntVar]] = []
        per_gpu_load: list[list[cp_model.LinearExprT]] = [[] for _ in range(num_gpus)]
        per_gpu_slots: list[list[cp_model.IntVar]] = [[] for _ in range(num_gpus)]
        objective: list[tuple[cp_model.IntVar, float]] = []
        unit = LOAD_UNITS / max(float(load.sum()), 1e-12)
        self.r: list[dict[int, cp_model.IntVar]] = []
        self.z: dict[tuple[int, int, int], cp_model.IntVar] = {}
        self.pair_z: dict[tuple[int, int, int], cp_model.IntVar] = {}
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
                objective.append((var, gains.arrive[e, g]))
                if not r:  # fixed count: load and departures are linear in y
                    per_gpu_load[g].append(math.ceil(load[e] / counts[0] * unit) * var)
                    objective.append((var, gains.depart[e, g] / counts[0]))
                    continue
                zs = []
                for k in counts:  # z = y AND (count == k)
                    z = self.z[(e, g, k)] = model.NewBoolVar("")
                    model.AddImplication(z, r[k])
                    zs.append(z)
                    per_gpu_load[g].append(math.ceil(load[e] / k * unit) * z)
                    objective.append((z, gains.depart[e, g] / k))
                model.Add(sum(zs) == var)
        for a, b, w in gains.pairs:  # pair on one GPU: z <= y[a, g], z <= y[b, g] (maximised)
            for g in self.y[a].keys() & self.y[b].keys():
                z = self.pair_z[(a, b, g)] = model.NewBoolVar("")
                model.AddImplication(z, self.y[a][g])
                model.AddImplication(z, self.y[b][g])
                objective.append((z, w))
        soft = current is not None
        self.excess = model.NewIntVar(0, LOAD_UNITS, "") if soft else 0
        for g in range(num_gpus):
            model.Add(sum(per_gpu_slots[g]) == slots)
            model.Add(sum(per_gpu_load[g]) <= cap + self.excess)
            if current is not None and max_moves is not None:
                model.Add(sum(self.y[e][g] for e in range(num_experts)
                              if g in self.y[e] and current[e, g] == 0) <= max_moves)
        total = float(gains.arrive.sum() + gains.depart.sum() + sum(w for _, _, w in gains.pairs))
        self.scale = OBJECTIVE_UNITS / max(total, 1e-300)
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
        for (a, b, g), var in self.pair_z.items():
            self.model.AddHint(var, bool(hosts[a, g]) and bool(hosts[b, g]))

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
    experts = np.arange(hosts.shape[1])
    return np.stack([np.concatenate([np.repeat(experts, layer[:, g]) for g in range(layer.shape[1])])
                     for layer in hosts])


def _excess(load: np.ndarray, hosts: np.ndarray, caps: np.ndarray) -> float:
    """Total load above the caps [L] (integer units) of replicas per GPU [L, E, G] with loads [L, E]."""
    unit = LOAD_UNITS / np.maximum(load.sum(1), 1e-12)
    per_replica = load / np.maximum(hosts.sum(2), 1) * unit[:, None]
    loads = np.einsum("leg,le->lg", hosts, per_replica)
    return float(np.clip(loads - caps[:, None], 0, None).sum())


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


def _fanout_pairs(coactivation: np.ndarray, counts: np.ndarray, partners: int,
                  weight: float) -> list[tuple[int, int, float]]:
    """(a, b, weight) for each expert's ``partners`` most co-activated partners, a < b, from one
    layer's coactivation [E, E] and replica counts [E]; the weight counts both orders (a, b), (b, a)."""
    if weight <= 0 or partners <= 0:
        return []
    num_experts = coactivation.shape[0]
    take = min(partners, num_experts - 1)
    if take <= 0:
        return []
    top = np.argpartition(-coactivation, take - 1, axis=1)[:, :take]
    chosen = {(min(a, int(b)), max(a, int(b))) for a in range(num_experts) for b in top[a] if a != b}
    return [(a, b, 2 * weight * float(coactivation[a, b]) / float(counts[a] * counts[b]))
            for a, b in sorted(chosen) if coactivation[a, b] > 0]


class _Search:
    """The state of one :func:`solve_placement` call: the incumbent and the per-layer re-solves."""

    def __init__(self, stats: RoutingStats, hosts: np.ndarray, caps: np.ndarray, slots: int,
                 allowed: list[list[list[int]]], weights: _Weights, opts: SolverOptions,
                 current_hosts: np.ndarray | None, budget: _Budget):
        self.stats, self.hosts, self.caps, self.slots = stats, hosts, caps, slots
        self.allowed, self.weights, self.opts = allowed, weights, opts
        self.current_hosts, self.budget = current_hosts, budget
        self.rng = np.random.default_rng(opts.seed)
        self.solves: dict[int, LayerSolve] = {}
        self.bar = None

    def score(self, hosts: np.ndarray) -> tuple[float, float]:
        """(-excess load, objective) of replicas per GPU [L, E, G]: larger is better, lexicographically."""
        return -round(_excess(self.stats.load, hosts, self.caps)), self.weights.score(hosts, self.stats)

    def local_score(self, hosts: np.ndarray, layer: int) -> tuple[float, float]:
        """The terms of :meth:`score` that depend on ``layer`` (unnormalised by the other layers'
        terms, which two placements differing only in ``layer`` share)."""
        stats, w, one = self.stats, self.weights, slice(layer, layer + 1)
        value = 0.0
        if w.colocation:
            lo, hi = max(layer - 1, 0), min(layer + 1, stats.num_layers - 1)
            value += w.colocation * float(kept_transitions(hosts[lo:hi + 1], stats.transitions[lo:hi]).sum())
        if w.fanout:
            value += w.fanout * float(stats.coactivation[layer].sum()) * pair_colocation_of_hosts(
                hosts[one], stats.coactivation[one])
        return -round(_excess(stats.load[one], hosts[one], self.caps[one])), value

    def gains(self, hosts: np.ndarray, layer: int, forward: bool) -> _LayerGains:
        """Objective of ``layer`` with the other layers of ``hosts`` [L, E, G] fixed (``forward``:
        the next layer is not placed yet, so departures are left out)."""
        stats, w = self.stats, self.weights
        zeros = np.zeros((stats.num_experts, hosts.shape[2]))
        arrive = depart = zeros
        if w.colocation and layer > 0:
            arrive = w.colocation * _arrivals(stats.transitions[layer - 1], hosts[layer - 1])
        if w.colocation and not forward and layer + 1 < stats.num_layers:
            depart = w.colocation * _departures(stats.transitions[layer], hosts[layer + 1])
        pairs = [] if not w.fanout else _fanout_pairs(stats.coactivation[layer], hosts[layer].sum(1),
                                                      self.opts.fanout_partners, w.fanout)
        return _LayerGains(arrive, depart, pairs)

    def solve(self, layer: int, gains: _LayerGains, amount: float,
              label: str) -> tuple[np.ndarray, LayerSolve] | None:
        """CP-SAT on ``layer`` with ``gains``, hinted from the incumbent: its [E, G] replicas and
        what CP-SAT reported, or None if it found no solution."""
        hint = self.hosts[layer]
        candidates = _candidate_gpus(gains.linear(hint.sum(1), hint), hint, self.allowed[layer],
                                     self.opts.gpu_candidates, self.rng)
        model = _LayerModel(self.stats.load[layer], self.allowed[layer], int(self.caps[layer]), self.slots,
                            candidates, gains, None if self.current_hosts is None else self.current_hosts[layer],
                            self.opts.max_moves)
        model.hint(hint)
        solver = cp_model.CpSolver()
        self.budget.configure(solver, max(amount, 0.05))
        deterministic = self.opts.deterministic_time is not None
        solver.parameters.num_workers = 1 if deterministic else max(1, min(self.opts.num_workers, 2))
        solver.parameters.random_seed = self.opts.seed
        tick = time.monotonic()
        status = solver.Solve(model.model, _Progress(self.bar, label))
        self.budget.charge(solver)
        if self.bar is not None:
            self.bar.update(1)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return None
        return model.hosts(solver), LayerSolve(layer, solver.StatusName(status),
                                               solver.ObjectiveValue() / model.scale,
                                               solver.BestObjectiveBound() / model.scale, time.monotonic() - tick)

    def improve_layer(self, layer: int, amount: float, forward: bool) -> bool:
        """Re-solve ``layer`` with its neighbours fixed; True if the incumbent changed (a forward
        step always takes the solution, a later one only if the whole placement scores better)."""
        solved = self.solve(layer, self.gains(self.hosts, layer, forward), amount, f"layer {layer}")
        if solved is None:
            return False
        candidate = self.hosts.copy()
        candidate[layer], self.solves[layer] = solved
        if not forward and self.local_score(candidate, layer) <= self.local_score(self.hosts, layer):
            return False
        self.hosts = candidate
        return True


def solve_placement(stats: RoutingStats, num_gpus: int, num_redundant: int, num_nodes: int = 1,
                    num_groups: int | None = None, options: SolverOptions | None = None) -> SolveResult:
    """Solve a placement for ``stats`` on ``num_gpus`` GPUs with ``num_redundant`` extra replicas.

    Returns the placement, the EPLB baseline and CP-SAT's objective/bound; raises ``ValueError``
    for impossible input.
    """
    opts = options or SolverOptions()
    start = time.monotonic()
    slots = check_layout(stats.num_experts, num_redundant, num_gpus, num_nodes)
    weights = _objective_weights(stats, opts.objective)
    if (opts.current is None) != (opts.max_moves is None):
        raise ValueError("migration mode needs both a current placement (--current) and --max-moves")
    limit = opts.time_limit if opts.deterministic_time is None else opts.deterministic_time
    if limit <= 0:
        raise ValueError(f"the solver budget must be > 0, got {limit}")
    budget = _Budget(limit, opts.deterministic_time is not None)
    eplb = eplb_placement(stats.load, num_gpus, num_redundant, num_nodes, num_groups)
    current_hosts = None
    if opts.current is not None:
        if opts.current.phy2log.shape != eplb.phy2log.shape or opts.current.num_gpus != num_gpus:
            raise ValueError(f"current placement has shape {list(opts.current.phy2log.shape)} on "
                             f"{opts.current.num_gpus} GPUs, expected {list(eplb.phy2log.shape)} on {num_gpus}")
        current_hosts = opts.current.hosts()
    hosts = (eplb if current_hosts is None else opts.current).hosts()
    caps = _balance_caps(stats, eplb, opts.balance_tolerance)
    if current_hosts is None:
        for layer in range(stats.num_layers):
            _spread_duplicates(stats.load[layer], hosts[layer], caps[layer])
    allowed = [_allowed_counts(stats.load[l], hosts[l].sum(1), opts.count_freedom, num_gpus, num_redundant > 0)
               for l in range(stats.num_layers)]
    search = _Search(stats, hosts, caps, slots, allowed, weights, opts, current_hosts, budget)
    num_layers = stats.num_layers
    if opts.progress:
        from tqdm import tqdm

        search.bar = tqdm(desc="placing", unit="layer", leave=False)
    try:
        starts = {"eplb" if current_hosts is None else "current": search.hosts}
        # forward pass from the incumbent: layers 1..L-1 after their predecessor, in a third of the budget
        for layer in range(1, num_layers):
            search.improve_layer(layer, (budget.remaining() - 2 * limit / 3) / (num_layers - layer), forward=True)
        starts["forward"] = search.hosts
        start_name = max(starts, key=lambda name: search.score(starts[name]))  # first of equals
        if start_name != "forward":
            search.hosts = starts[start_name]
            search.solves.clear()  # their bounds were about the forward pass's layers
        # block coordinate ascent over all layers until the budget is spent or nothing improves
        improved = True
        while improved and budget.remaining() > 0.1:
            improved = False
            for layer in range(num_layers):
                if budget.remaining() <= 0.1:
                    break
                improved |= search.improve_layer(layer, min(budget.remaining(), limit / (3 * num_layers)),
                                                 forward=False)
    finally:
        if search.bar is not None:
            search.bar.close()
    placement = Placement(_rows_from_hosts(search.hosts), stats.num_experts, num_gpus, num_nodes)
    solves = list(search.solves.values())
    return SolveResult(placement=placement, eplb=eplb, objective=sum(s.objective for s in solves),
                       bound=sum(s.bound for s in solves), solve_seconds=time.monotonic() - start,
                       layer_solves=solves, start=start_name)
