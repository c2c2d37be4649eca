"""Multi-turn sessions for a trace that has none (e.g. Azure 2023 conv): an assumed conversation model.

The Azure trace lists independent requests (arrival, ContextTokens, GeneratedTokens): no session
ids, no prompt contents, so nothing in it says which requests belong to one conversation or
share a prefix. :func:`add_sessions` *imposes* a conversation structure on it, with a seed, so that
dispatchers can be compared on a chat-like workload with the trace's arrival process and its
per-turn token counts. Everything below is an assumption of this module, not a fact of the trace:

- **Turns per session**: geometric on 1, 2, ... with mean :attr:`SessionSpec.mean_turns` (each
  turn is followed by another with probability ``1 - 1/mean_turns``), drawn when the session starts.
- **Think time**: after a turn arrives, the session's next turn may arrive no earlier than an
  exponential gap of mean :attr:`SessionSpec.think_time_s` (in the input's time base; it covers the
  previous answer's latency plus the user's reading and typing). Open-loop: the answer's real
  completion time is not known when the workload is built.
- **Assignment**: rows are taken in arrival order and keep their arrival times. A row becomes the
  next turn of the session that has been ready longest (its think time has passed and it has turns
  left), else it starts a new session. The arrival process of the input is therefore unchanged.
- **Prompts**: a turn's prompt is the session's whole history (every earlier prompt and output)
  followed by the row's ``input_tokens`` as the new message: ``prompt_k = prompt_{k-1} +
  output_{k-1} + new_k``. Output tokens are the row's. So prompts are *longer* than the trace's
  (the trace's ContextTokens become the new tokens of each turn).
- **Prefix blocks**: every session has its own stream of block ids; a turn lists the ids of all
  whole ``BLOCK_TOKENS`` blocks of its prompt, so turn k+1 shares with turn k exactly the whole
  blocks of turn k's prompt (and with turn k-1 those of turn k-1's prompt, ...). Different
  sessions share nothing (no common system prompt is assumed).
- **Context limit**: a turn whose prompt plus output would exceed
  :attr:`SessionSpec.max_context_tokens` is not added; the session ends and the row starts a new
  one (a row that alone exceeds the limit is kept as a one-turn session).

The transform is causal: the first n requests of ``add_sessions(rows)`` equal
``add_sessions(rows[:n])``, so capping after it and before it agree. Rescaling the result's
arrival times (``scale_to_rate``) keeps the sessions and scales think times with the gaps, as it
does for the Mooncake trace's own conversations.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from dataclasses import dataclass

import numpy as np

from experiments.workloads.types import BLOCK_TOKENS, TraceRequest


@dataclass(frozen=True)
class SessionSpec:
    """Parameters of the assumed conversation model (module docstring).

    Attributes:
        mean_turns: mean turns per session (>= 1; 1 = every request its own session).
        think_time_s: mean minimum gap between a session's consecutive arrivals, seconds (>= 0).
        max_context_tokens: prompt + output limit of one turn, tokens (None: unlimited).
        seed: random seed of turn counts and think times.
    """

    mean_turns: float = 4.0
    think_time_s: float = 30.0
    max_context_tokens: int | None = 32_768
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.mean_turns >= 1 and math.isfinite(self.mean_turns)):
            raise ValueError(f"sessions: mean_turns: expected a number >= 1, got {self.mean_turns!r}")
        if not (self.think_time_s >= 0 and math.isfinite(self.think_time_s)):
            raise ValueError(f"sessions: think_time_s: expected a number >= 0, got {self.think_time_s!r}")
        if self.max_context_tokens is not None and self.max_context_tokens < 2:
            raise ValueError(f"sessions: max_context_tokens: expected an integer >= 2, got {self.max_context_tokens!r}")


@dataclass
class _Session:
    """A conversation in progress: its number, block ids so far, history length, turns left."""

    number: int
    blocks: list[int]
    history_tokens: int
    turns_left: int


def add_sessions(requests: list[TraceRequest], spec: SessionSpec = SessionSpec()) -> list[TraceRequest]:
    """Group ``requests`` (sorted by arrival) into multi-turn sessions; see the module docstring.

    Returns one request per input request, same ids, arrival times and output tokens, in the same
    order, with ``input_tokens`` grown by the session history, ``prefix_blocks`` and
    ``session_id = "sess-<k>"`` set. Existing prefix blocks and session ids are replaced.
    """
    if any(b.arrival_s < a.arrival_s for a, b in zip(requests, requests[1:])):
        raise ValueError("sessions: expected requests sorted by arrival_s")
    rng = np.random.default_rng(spec.seed)
    limit = math.inf if spec.max_context_tokens is None else spec.max_context_tokens
    ready: list[tuple[float, int, _Session]] = []  # (time the next turn may arrive, session number, session)
    next_block = 0
    started = 0
    out: list[TraceRequest] = []
    for req in requests:
        session = None
        if ready and ready[0][0] <= req.arrival_s:
            session = heapq.heappop(ready)[2]
            if session.history_tokens + req.input_tokens + req.output_tokens > limit:
                session = None  # the conversation ends at the context limit
        if session is None:
            session = _Session(started, [], 0, int(rng.geometric(1.0 / spec.mean_turns)))
            started += 1
        prompt = session.history_tokens + req.input_tokens
        whole = prompt // BLOCK_TOKENS
        missing = whole - len(session.blocks)
        if missing > 0:
            session.blocks.extend(range(next_block, next_block + missing))
            next_block += missing
        out.append(dataclasses.replace(req, input_tokens=prompt, prefix_blocks=tuple(session.blocks[:whole]),
                                       session_id=f"sess-{session.number}"))
        session.history_tokens = prompt + req.output_tokens
        session.turns_left -= 1
        if session.turns_left > 0:
            gap = float(rng.exponential(spec.think_time_s)) if spec.think_time_s > 0 else 0.0
            heapq.heappush(ready, (req.arrival_s + gap, session.number, session))
    return out
