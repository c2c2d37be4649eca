"""SGLang 0.5.23's admission headroom for tokens running requests will still decode.

SGLang does not admit a waiting request just because its prompt fits: ``PrefillAdder``
(``srt/managers/schedule_policy.py``) counts against the free KV (free + evictable tokens,
``PrefillBudget.remaining_total`` in ``srt/mem_cache/prefill_budget.py``)

- every running request's ``min(max_new_tokens - output_len, CLIP_MAX_NEW_TOKENS) x
  new_token_ratio`` (``_get_running_request_total_token_offset``),
- every request admitted earlier in the same pass: its extend tokens plus its clipped
  ``max_new_tokens`` (0 for the one that is chunked) (``_update_prefill_budget``),

and admits a candidate only if ``extend + min(max_new_tokens - output_len, CLIP) + page`` is
strictly below what is left (``PrefillBudget.check_prefill``; a page is one token here).
``new_token_ratio`` (``scheduler_components/new_token_ratio_tracker.py``) starts at
``SGLANG_INIT_NEW_TOKEN_RATIO`` = 0.7, falls by ``(0.7 - 0.7 x 0.14) / 600`` per decode step
without retraction to 0.098, is reset to 0.7 when the scheduler idles, and after a retraction
becomes ``(sum output_len + 20 x n) / (sum max_new_tokens + 1)`` (capped at 1) over the ``n``
requests still running (``estimate_new_token_ratio_after_retract``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

#: SGLang's CLIP_MAX_NEW_TOKENS (env SGLANG_CLIP_MAX_NEW_TOKENS_ESTIMATION, default 4096)
CLIP_MAX_NEW_TOKENS = 4096
#: SGLANG_INIT_NEW_TOKEN_RATIO x schedule_conservativeness (defaults 0.7 x 1.0)
INIT_NEW_TOKEN_RATIO = 0.7
#: SGLANG_MIN_NEW_TOKEN_RATIO_FACTOR (default 0.14)
MIN_NEW_TOKEN_RATIO_FACTOR = 0.14
#: SGLANG_NEW_TOKEN_RATIO_DECAY_STEPS (default 600)
NEW_TOKEN_RATIO_DECAY_STEPS = 600
#: SGLANG_RETRACT_DECODE_STEPS (default 20)
RETRACT_DECODE_STEPS = 20


def clipped_new_tokens(max_new_tokens: int, output_tokens: int, clip: int = CLIP_MAX_NEW_TOKENS) -> int:
    """Output tokens SGLang still expects from a request, clipped: ``min(max_new - out, clip)`` (>= 0)."""
    return min(max(max_new_tokens - output_tokens, 0), clip)


class NewTokenRatio:
    """SGLang's ``NewTokenRatioTracker`` with its default settings.

    Attributes:
        current: the ratio in use (fraction of a running request's clipped remaining
            ``max_new_tokens`` that admission keeps free for it).
    """

    def __init__(self) -> None:
        self.init = INIT_NEW_TOKEN_RATIO
        self.min = INIT_NEW_TOKEN_RATIO * MIN_NEW_TOKEN_RATIO_FACTOR
        self.decay = (self.init - self.min) / NEW_TOKEN_RATIO_DECAY_STEPS
        self.current = self.init

    def decay_step(self) -> None:
        """A decode step ran without retraction."""
        self.current = max(self.current - self.decay, self.min)

    def reset(self) -> None:
        """The engine went idle."""
        self.current = self.init

    def after_retract(self, running: Iterable[tuple[int, int]]) -> None:
        """A decode step retracted requests; ``running`` = ``(output_tokens, max_new_tokens)`` of
        the requests still running."""
        decoded = slots = count = 0
        for output_tokens, max_new_tokens in running:
            decoded += output_tokens
            slots += max_new_tokens
            count += 1
        self.current = min(1.0, (decoded + RETRACT_DECODE_STEPS * count) / (slots + 1))


@dataclass(frozen=True)
class RunningRequest:
    """What the reservation needs of a decoding request (tokens)."""

    input_tokens: int
    output_tokens: int
    max_new_tokens: int


class DecodeReservation:
    """One engine's admission headroom (module docstring), over a KV pool of ``kv_capacity_tokens``.

    The engine asks :meth:`reserved` once per admission pass, :meth:`fits` per candidate (adding
    the clipped ``max_new_tokens`` of each admitted, unchunked request to ``reserved``), and
    reports every decode step (:meth:`on_decode_step`) and idle moment (:meth:`on_idle`).
    """

    def __init__(self, kv_capacity_tokens: int, clip: Callable[[], int] = lambda: CLIP_MAX_NEW_TOKENS) -> None:
        """``clip`` gives the current ``CLIP_MAX_NEW_TOKENS`` (SGLang's constant by default, a
        :class:`request_sched.headroom.LearntHeadroom`'s value with the moesched plugin)."""
        self.capacity = kv_capacity_tokens
        self.clip = clip
        self.ratio = NewTokenRatio()

    def max_new_tokens(self, requested: int, input_tokens: int) -> int:
        """``max_new_tokens`` as SGLang clips it on arrival to fit the KV pool (``Scheduler``
        request handling: ``min(max_new, max_req_len - input_len - 1)``, ``max_req_len`` =
        pool size - 1)."""
        return min(requested, self.capacity - input_tokens - 2)

    def new_tokens(self, requested: int, input_tokens: int, output_tokens: int) -> int:
        """Clipped output tokens SGLang still expects from a request."""
        return clipped_new_tokens(self.max_new_tokens(requested, input_tokens), output_tokens, self.clip())

    def reserved(self, running: Iterable[RunningRequest]) -> float:
        """KV tokens kept free for the ``running`` requests' future decode tokens."""
        return self.ratio.current * sum(self.new_tokens(r.max_new_tokens, r.input_tokens, r.output_tokens)
                                         for r in running)

    @staticmethod
    def fits(free_tokens: int, reserved: float, uncached_prompt: int, new_tokens: int) -> bool:
        """``PrefillBudget.check_prefill``: prompt + clipped new tokens + one page < what is left."""
        return uncached_prompt + new_tokens + 1 < free_tokens - reserved

    def on_decode_step(self, retracted: bool, running: Iterator[RunningRequest]) -> None:
        """A decode step ran; ``retracted``: it had to preempt, ``running``: who still runs."""
        if retracted:
            self.ratio.after_retract((r.output_tokens, self.max_new_tokens(r.max_new_tokens, r.input_tokens))
                                     for r in running)
        else:
            self.ratio.decay_step()

    def on_idle(self) -> None:
        self.ratio.reset()
