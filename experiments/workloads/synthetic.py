"""Synthetic workloads: Poisson or gamma arrivals, length distributions, shared prefixes, sessions.

A :class:`SyntheticSpec` describes the workload; :func:`generate_synthetic` draws it with a seed.
Specs can be written as JSON (``SyntheticSpec.from_dict``), e.g.::

    {"num_requests": 200, "rate_rps": 4, "arrival": "gamma", "arrival_cv": 2.0,
     "input": {"kind": "lognormal", "mean": 600, "cv": 0.8, "maximum": 1500},
     "output": {"kind": "uniform", "mean": 100, "cv": 0.5},
     "prefix_groups": 4, "prefix_tokens": 1024, "sessions": 20, "max_context_tokens": 1800}

Semantics:

- Arrivals: inter-arrival gaps are i.i.d. exponential with mean ``1/rate_rps`` ("poisson") or gamma
  with mean ``1/rate_rps`` and coefficient of variation ``arrival_cv`` ("gamma": shape
  ``1/cv^2``, scale ``cv^2/rate``; cv = 1 is Poisson, cv > 1 is bursty).
- ``input`` draws each request's own (unshared) prompt tokens; ``output`` its output tokens.
- Shared-prefix groups: with ``prefix_groups = G > 0``, every request (or every session, if
  sessions are on) joins one of G groups uniformly; the group's ``prefix_tokens // 512`` blocks are
  prepended, so its prompt is ``prefix_tokens`` longer.
- Sessions: with ``sessions = S > 0``, each request is a turn of a uniformly chosen session. A turn's
  prompt is the session's context so far (previous prompt + previous output) plus the new input;
  the whole blocks of that context are the request's ``prefix_blocks``, so consecutive turns share
  a growing prefix. A session whose next prompt plus output would exceed ``max_context_tokens``
  starts afresh under a new session id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from experiments.workloads.types import BLOCK_TOKENS, TraceRequest

LengthKind = Literal["fixed", "uniform", "lognormal"]
LENGTH_KINDS: tuple[str, ...] = ("fixed", "uniform", "lognormal")
ARRIVALS: tuple[str, ...] = ("poisson", "gamma")


@dataclass(frozen=True)
class LengthDist:
    """A token-length distribution given by its mean and coefficient of variation (std / mean).

    ``fixed`` always returns ``round(mean)``; ``uniform`` is uniform on ``mean * (1 +- cv*sqrt(3))``;
    ``lognormal`` has the given mean and cv. Samples are rounded and clipped to
    ``[minimum, maximum]`` (``maximum`` None = unbounded).
    """

    kind: LengthKind = "fixed"
    mean: float = 128.0
    cv: float = 0.0
    minimum: int = 1
    maximum: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in LENGTH_KINDS:
            raise ValueError(f"length kind: expected one of {', '.join(LENGTH_KINDS)}, got {self.kind!r}")
        if not (self.mean >= 1 and math.isfinite(self.mean)):
            raise ValueError(f"length mean: expected a number >= 1, got {self.mean!r}")
        if not (self.cv >= 0 and math.isfinite(self.cv)):
            raise ValueError(f"length cv: expected a number >= 0, got {self.cv!r}")
        if self.minimum < 1 or (self.maximum is not None and self.maximum < self.minimum):
            raise ValueError(f"length bounds: expected 1 <= minimum <= maximum, got {self.minimum}, {self.maximum}")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` lengths; returns an int64 array of shape (n,)."""
        if self.kind == "fixed" or self.cv == 0:
            raw = np.full(n, self.mean)
        elif self.kind == "uniform":
            half = self.mean * self.cv * math.sqrt(3.0)
            raw = rng.uniform(self.mean - half, self.mean + half, size=n)
        else:
            sigma2 = math.log1p(self.cv**2)
            raw = rng.lognormal(math.log(self.mean) - sigma2 / 2, math.sqrt(sigma2), size=n)
        upper = np.inf if self.maximum is None else self.maximum
        return np.clip(np.rint(raw), self.minimum, upper).astype(np.int64)


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate; see the module docstring for the semantics of each field."""

    num_requests: int = 100
    rate_rps: float = 1.0
    arrival: Literal["poisson", "gamma"] = "poisson"
    arrival_cv: float = 1.0
    input: LengthDist = field(default_factory=lambda: LengthDist("fixed", 256))
    output: LengthDist = field(default_factory=lambda: LengthDist("fixed", 64))
    prefix_groups: int = 0
    prefix_tokens: int = 0
    sessions: int = 0
    max_context_tokens: int | None = None
    workload_class: str | None = None

    def __post_init__(self) -> None:
        if self.num_requests < 1:
            raise ValueError(f"num_requests: expected an integer >= 1, got {self.num_requests}")
        if not (self.rate_rps > 0 and math.isfinite(self.rate_rps)):
            raise ValueError(f"rate_rps: expected a number > 0, got {self.rate_rps}")
        if self.arrival not in ARRIVALS:
            raise ValueError(f"arrival: expected one of {', '.join(ARRIVALS)}, got {self.arrival!r}")
        if not self.arrival_cv > 0:
            raise ValueError(f"arrival_cv: expected a number > 0, got {self.arrival_cv}")
        if self.prefix_groups < 0 or self.prefix_tokens < 0 or self.sessions < 0:
            raise ValueError("prefix_groups, prefix_tokens, sessions: expected integers >= 0")
        if self.prefix_groups > 0 and self.prefix_tokens < BLOCK_TOKENS:
            raise ValueError(f"prefix_tokens: expected >= {BLOCK_TOKENS} when prefix_groups > 0, got {self.prefix_tokens}")
        if self.max_context_tokens is not None and self.max_context_tokens < 2:
            raise ValueError(f"max_context_tokens: expected an integer >= 2, got {self.max_context_tokens}")

    @classmethod
    def from_dict(cls, obj: Any) -> SyntheticSpec:
        """Build a spec from parsed JSON; unknown keys and wrong types raise ``ValueError``."""
        if not isinstance(obj, dict):
            raise ValueError(f"synthetic spec: expected a JSON object, got {type(obj).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(obj) - known)
        if unknown:
            raise ValueError(f"synthetic spec: unknown field(s) {', '.join(unknown)}; expected some of {', '.join(sorted(known))}")
        kwargs = dict(obj)
        for key in ("input", "output"):
            if key in kwargs:
                dist = kwargs[key]
                if not isinstance(dist, dict) or set(dist) - set(LengthDist.__dataclass_fields__):
                    raise ValueError(f"synthetic spec: field {key}: expected an object with keys among "
                                     f"{', '.join(LengthDist.__dataclass_fields__)}")
                kwargs[key] = LengthDist(**dist)
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ValueError(f"synthetic spec: {exc}") from None


def _arrivals(spec: SyntheticSpec, rng: np.random.Generator) -> np.ndarray:
    """Arrival times in seconds, shape (num_requests,), first at 0."""
    n = spec.num_requests
    if spec.arrival == "poisson":
        gaps = rng.exponential(1.0 / spec.rate_rps, size=n - 1)
    else:
        shape = 1.0 / spec.arrival_cv**2
        gaps = rng.gamma(shape, 1.0 / (shape * spec.rate_rps), size=n - 1)
    return np.concatenate([[0.0], np.cumsum(gaps)])


@dataclass
class _Session:
    """Running state of one conversation: id, prompt block ids so far, context tokens so far."""

    session_id: str
    blocks: list[int]
    context_tokens: int


def generate_synthetic(spec: SyntheticSpec, seed: int = 0) -> list[TraceRequest]:
    """Draw a workload from ``spec``; same spec and seed give the same requests."""
    rng = np.random.default_rng(seed)
    arrivals = _arrivals(spec, rng)
    own_inputs = spec.input.sample(rng, spec.num_requests)
    outputs = spec.output.sample(rng, spec.num_requests)
    next_block = 0

    def new_blocks(count: int) -> list[int]:
        nonlocal next_block
        ids = list(range(next_block, next_block + count))
        next_block += count
        return ids

    group_blocks = [new_blocks(spec.prefix_tokens // BLOCK_TOKENS) for _ in range(spec.prefix_groups)]

    def group_start() -> tuple[list[int], int]:
        if not group_blocks:
            return [], 0
        return list(group_blocks[int(rng.integers(spec.prefix_groups))]), spec.prefix_tokens

    session_count = 0

    def new_session() -> _Session:
        nonlocal session_count
        blocks, tokens = group_start()
        session_count += 1
        return _Session(f"syn-s{session_count - 1}", blocks, tokens)

    sessions = [new_session() for _ in range(spec.sessions)]
    requests: list[TraceRequest] = []
    for i in range(spec.num_requests):
        own, out = int(own_inputs[i]), int(outputs[i])
        if sessions:
            slot = int(rng.integers(len(sessions)))
            state = sessions[slot]
            limit = spec.max_context_tokens
            if limit is not None and state.context_tokens + own + out > limit and state.context_tokens > 0:
                state = sessions[slot] = new_session()
            context = state.context_tokens
            whole = context // BLOCK_TOKENS
            if whole > len(state.blocks):
                state.blocks.extend(new_blocks(whole - len(state.blocks)))
            prefix, session_id = tuple(state.blocks[:whole]), state.session_id
            state.context_tokens = context + own + out
        else:
            blocks, context = group_start()
            prefix, session_id = tuple(blocks), None
        requests.append(TraceRequest(
            request_id=f"syn-{i}", arrival_s=float(arrivals[i]), input_tokens=context + own,
            output_tokens=out, prefix_blocks=prefix, session_id=session_id,
            workload_class=spec.workload_class,
        ))
    return requests
